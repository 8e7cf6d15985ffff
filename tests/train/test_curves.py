"""curves.png: a title naming the run, split-named curves, an lr panel, the best epoch marked, visible points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from imgcls.train import TrainConfig, train
from imgcls.train import trainer as trainer_mod
from imgcls.train.trainer import _plot_curves, plot_curves


def _row(epoch: int, lr: float, **metrics: float) -> dict[str, Any]:
    base = dict(epoch=epoch, step=10 * epoch, train_loss=2.0 / epoch, train_acc=0.2 * epoch, lr=lr)
    return base | dict(epoch_seconds=1.0, images=100, images_per_sec=100.0) | metrics


ONE_EPOCH = [_row(1, 0.1, test_loss=1.5, test_acc=0.42, test_top5=0.9)]
# Evaluated every second epoch; the test accuracy peaks at epoch 2.
FOUR_EPOCHS = [
    _row(1, 0.4),
    _row(2, 0.3, test_loss=1.0, test_acc=0.8, test_top5=0.99),
    _row(3, 0.1),
    _row(4, 0.0, test_loss=1.1, test_acc=0.7, test_top5=0.98),
]


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def _data_lines(ax) -> dict[str, Line2D]:
    """The curves of ``ax`` by label (not the best-epoch line and marker)."""
    return {ln.get_label(): ln for ln in ax.get_lines() if ln.get_label() in ("train", "val", "test", "lr")}


def _best_lines(ax) -> list[Line2D]:
    """Vertical lines: both x values equal, spanning the axes."""
    return [ln for ln in ax.get_lines() if len(set(ln.get_xdata())) == 1 and list(ln.get_ydata()) == [0, 1]]


def test_one_epoch_figure_has_title_panels_labels_and_visible_points() -> None:
    fig = plot_curves(ONE_EPOCH, "run-a: quicknet_s on fashion-mnist")
    assert isinstance(fig, Figure)
    assert fig._suptitle is not None and fig._suptitle.get_text() == "run-a: quicknet_s on fashion-mnist"
    loss, acc, lr = fig.axes
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "loss",
        "top-1 accuracy (%)",
        "learning rate (end of epoch)",
    ]
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch"] * 3
    assert _legend(loss) == ["train", "test"]
    assert _legend(acc) == ["train", "test", "best: epoch 1 (test 42.00%)"]
    for ax in fig.axes:
        lines = _data_lines(ax)
        assert lines, ax.get_ylabel()
        for label, ln in lines.items():
            assert len(ln.get_xdata()) == 1
            assert ln.get_marker() not in (None, "", " ", "None"), f"{ax.get_ylabel()}: {label} has no marker"
        assert [ln.get_xdata()[0] for ln in _best_lines(ax)] == [1]
        assert list(ax.get_xticks()) == [1]  # one tick, not fractions of an epoch
    assert list(_data_lines(acc)["test"].get_ydata()) == [pytest.approx(42.0)]
    assert list(_data_lines(lr)["lr"].get_ydata()) == [0.1]


def test_multi_epoch_figure_marks_the_best_evaluated_epoch() -> None:
    fig = plot_curves(FOUR_EPOCHS, "run-b")
    loss, acc, lr = fig.axes
    assert list(_data_lines(acc)["train"].get_xdata()) == [1, 2, 3, 4]
    assert list(_data_lines(acc)["test"].get_xdata()) == [2, 4]  # only the evaluated epochs
    assert list(_data_lines(lr)["lr"].get_ydata()) == [0.4, 0.3, 0.1, 0.0]
    assert "best: epoch 2 (test 80.00%)" in _legend(acc)
    for ax in fig.axes:
        assert [ln.get_xdata()[0] for ln in _best_lines(ax)] == [2]
    stars = [ln for ln in acc.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_xdata()) == [2] and list(stars[0].get_ydata()) == [80.0]


def test_best_is_chosen_on_validation_when_the_history_has_it() -> None:
    history = [
        _row(1, 0.2, val_loss=1.0, val_acc=0.9, test_loss=1.0, test_acc=0.5),
        _row(2, 0.1, val_loss=1.2, val_acc=0.8, test_loss=0.9, test_acc=0.6),
    ]
    fig = plot_curves(history)
    loss, acc, _ = fig.axes
    assert _legend(loss) == ["train", "val", "test"]
    assert "best: epoch 1 (val 90.00%)" in _legend(acc)
    assert fig._suptitle is None  # no title asked for


def test_no_evaluated_epoch_yet_draws_no_best_marker() -> None:
    fig = plot_curves(FOUR_EPOCHS[:1], "run-c")
    for ax in fig.axes:
        assert not _best_lines(ax)
    assert _legend(fig.axes[0]) == ["train"]


def test_plot_curves_writes_a_png(tmp_path: Path) -> None:
    for name, history in (("one.png", ONE_EPOCH), ("four.png", FOUR_EPOCHS)):
        _plot_curves(history, tmp_path / name, "title")
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["four.png", "one.png"]  # no temporaries left


def test_the_trainer_titles_the_curves_with_run_model_and_dataset(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    titles: list[str] = []
    real = trainer_mod.plot_curves

    def spy(history: list[dict[str, Any]], title: str = "") -> Figure:
        titles.append(title)
        return real(history, title)

    monkeypatch.setattr(trainer_mod, "plot_curves", spy)
    cfg = TrainConfig(
        dataset="fashion-mnist",
        data_dir=str(tiny_fmnist),
        out_dir=str(tmp_path),
        name="my-run",
        epochs=1,
        batch_size=32,
        lr=0.05,
        warmup_epochs=0.0,
        progress=False,
        fallback_dataset=None,
        amp="off",
    )
    r = train(cfg)
    assert titles == ["my-run: quicknet_s on fashion-mnist"]
    assert (r.run_dir / "curves.png").is_file()
