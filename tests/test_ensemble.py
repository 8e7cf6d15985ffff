"""Ensembles: the combination rules, members of other normalisations, one-pass evaluation, eval and predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from imgcls.cli.main import main
from imgcls.ensemble import Ensemble, evaluate_ensemble_runs, load_ensemble
from imgcls.errors import CheckpointError, ConfigError
from imgcls.evaluate import evaluate_run
from imgcls.predict import predict
from imgcls.train import TrainConfig, load_run, train


class Fixed(nn.Module):
    """Returns the same logits for every image of a batch."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def test_combination_rules() -> None:
    a, b, c = [2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.9, 0.0, 2.0]
    x = torch.zeros(4, 1, 2, 2)
    logits = torch.tensor([a, b, c])
    mean_logits = Ensemble([Fixed(a), Fixed(b), Fixed(c)], "mean-logits")(x)
    torch.testing.assert_close(mean_logits, logits.mean(0).expand(4, -1))
    mean_probs = Ensemble([Fixed(a), Fixed(b), Fixed(c)], "mean-probs")(x)
    torch.testing.assert_close(mean_probs.softmax(1), logits.softmax(1).mean(0).expand(4, -1))
    # one vote each: a tie, broken by the mean probability (class 0: 0.43, class 1: 0.36, class 2: 0.21)
    vote = Ensemble([Fixed(a), Fixed(b), Fixed(c)], "vote")(x)
    assert logits.softmax(1).mean(0).argmax() == 0 and vote.argmax(1).tolist() == [0] * 4
    vote = Ensemble([Fixed([1.0, 0.0, 0.0]), Fixed([0.0, 9.0, 0.0]), Fixed(c)], "vote")(x)  # class 1 surer
    assert vote.argmax(1).tolist() == [1] * 4
    torch.testing.assert_close(vote.softmax(1).sum(1), torch.ones(4))
    # two votes beat one, however sure the one
    vote = Ensemble([Fixed(a), Fixed(a), Fixed([0.0, 50.0, 0.0])], "vote")(x)
    assert vote.argmax(1).tolist() == [0] * 4 and vote.softmax(1)[0, 0] == pytest.approx(2 / 3, abs=1e-2)
    with pytest.raises(ConfigError, match="combine must be one of mean-logits, mean-probs, vote"):
        Ensemble([Fixed(a)], "median")


@pytest.fixture(scope="module")
def runs(tiny_fmnist: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three runs: two MLPs of different seeds and a linear classifier."""
    out = tmp_path_factory.mktemp("ens-runs")
    base = dict(
        dataset="fashion-mnist",
        data_dir=str(tiny_fmnist),
        out_dir=str(out),
        epochs=2,
        batch_size=32,
        lr=0.05,
        progress=False,
        fallback_dataset=None,
        augment="none",
        amp="off",
    )
    made = []
    for name, model, seed in (("mlp0", "mlp", 0), ("mlp1", "mlp", 1), ("lin", "linear_softmax", 0)):
        made.append(train(TrainConfig(name=name, model=model, seed=seed, **base)).run_dir)
    return made


def test_one_pass_gives_each_member_its_own_evaluation(runs: list[Path], tiny_fmnist: Path) -> None:
    ev = evaluate_ensemble_runs(runs, combine="mean-probs", device="cpu", data_dir=str(tiny_fmnist))
    assert len(ev.members) == 3 and ev.ensemble.n == 80
    for run, member in zip(runs, ev.members):
        alone, _ = evaluate_run(run, device="cpu", save=False, data_dir=str(tiny_fmnist))
        assert member.confusion == alone.confusion and member.top1 == alone.top1
    assert ev.names == ["mlp0/best.safetensors", "mlp1/best.safetensors", "lin/best.safetensors"]
    table = ev.table().splitlines()
    assert table[0].split() == ["member", "top-1", "top-5"] and table[-1].startswith("ensemble (mean-probs)")


def test_a_member_of_another_normalisation_sees_its_own(runs: list[Path]) -> None:
    a, b = load_run(runs[0]), load_run(runs[1])
    b.info = dict(b.info, mean=[0.2], std=[0.5])  # as if b had been trained with other statistics
    ensemble, _ = load_ensemble([a, b])
    raw = torch.rand(3, 1, 28, 28)
    x_a = (raw - a.info["mean"][0]) / a.info["std"][0]  # the ensemble's input: normalised as the first run's
    x_b = (raw - 0.2) / 0.5
    logits = ensemble.member_logits(x_a)
    with torch.no_grad():
        want_b = b.model(x_b)
        want_b = 0.5 * (want_b + b.model(x_b.flip(-1)))  # the run's own test-time flip
    torch.testing.assert_close(logits[1], want_b, atol=1e-5, rtol=1e-5)


def test_members_must_agree_on_classes_and_input(runs: list[Path]) -> None:
    a, b = load_run(runs[0]), load_run(runs[1])
    b.info = dict(b.info, classes=[f"c{i}" for i in range(10)])
    with pytest.raises(
        CheckpointError, match=r"same classes: '.*mlp0' \(mlp\) has T-shirt/top.*'.*mlp1' \(mlp\) has c0"
    ):
        load_ensemble([a, b])
    b.info = dict(a.info, image_size=32)
    with pytest.raises(CheckpointError, match=r"same input: .* takes 1x28x28 images, .* 1x32x32"):
        load_ensemble([a, b])


def test_eval_cli_prints_members_and_ensemble_and_writes_its_report(
    runs: list[Path], tiny_fmnist: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "report"
    argv = ["eval", *map(str, runs), "--combine", "vote", "--device", "cpu", "--out", str(out)]
    argv += ["--data-dir", str(tiny_fmnist)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "mlp0/best.safetensors" in text and "lin/best.safetensors" in text and "ensemble (vote)" in text
    assert "per-class accuracy" in text  # the ensemble's full report
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 80 and metrics["source"]["run"] == "ensemble of 3 (vote)"
    assert (out / "confusion_counts.csv").is_file() and (out / "confusion_row_normalised.png").is_file()
    argv = ["eval", *map(str, runs[:2]), "--device", "cpu", "--json", "--out", str(out)]
    assert main([*argv, "--data-dir", str(tiny_fmnist)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["run"] for m in data["members"]] == ["mlp0/best.safetensors", "mlp1/best.safetensors"]
    assert data["ensemble"]["n"] == 80


def test_eval_cli_refuses_runs_of_other_classes_in_one_line(
    runs: list[Path], tiny_fmnist: Path, tmp_path: Path, capsys
) -> None:
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    info = json.loads((other / "model.json").read_text())
    info["classes"] = [f"c{i}" for i in range(10)]
    (other / "model.json").write_text(json.dumps(info))
    assert main(["eval", str(runs[0]), str(other), "--device", "cpu", "--data-dir", str(tiny_fmnist)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the runs of an ensemble must have the same classes" in err[0]


def test_predict_with_several_runs_averages_their_probabilities(
    runs: list[Path], tmp_path: Path, capsys
) -> None:
    images = [np.random.default_rng(i).integers(0, 255, (28, 28), dtype=np.uint8) for i in range(3)]

    def probs(preds) -> np.ndarray:  # (N, classes) in class order
        names = load_run(runs[0]).classes
        return np.array([[dict(p.top)[c] for c in names] for p in preds])

    alone = [probs(predict(r, images, top_k=10, device="cpu")) for r in runs[:2]]
    both = probs(predict(runs[:2], images, top_k=10, device="cpu", combine="mean-probs"))
    np.testing.assert_allclose(both, (alone[0] + alone[1]) / 2, atol=1e-5)
    # the CLI: the leading runs are the ensemble, the rest are images
    from PIL import Image

    Image.fromarray(images[0]).save(tmp_path / "a.png")
    argv = ["predict", str(runs[0]), str(runs[1]), str(tmp_path / "a.png"), "--combine", "mean-probs"]
    assert main([*argv, "--json", "-k", "10", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 1 and out[0]["input"].endswith("a.png")
    got = {t["class"]: t["prob"] for t in out[0]["top"]}
    np.testing.assert_allclose([got[c] for c in load_run(runs[0]).classes], both[0], atol=1e-5)


def test_an_ensemble_exports_as_one_module(runs: list[Path]) -> None:
    ensemble, _ = load_ensemble(runs, combine="mean-probs")
    x = torch.randn(2, 1, 28, 28)
    exported = torch.export.export(ensemble, (x,))
    torch.testing.assert_close(exported.module()(x), ensemble(x))
