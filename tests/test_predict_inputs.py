"""predict() takes Pillow images, tensors and numpy arrays as well as files, and preprocesses them all alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from imgcls.data.folder import BadImagesError
from imgcls.errors import DataError
from imgcls.predict import predict
from imgcls.train.checkpoint import LoadedRun


class _Recording(nn.Module):
    """A fixed random linear classifier that remembers the last batch it saw."""

    def __init__(self, in_chans: int, size: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(in_chans * size * size, 4)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return 20 * self.fc(x.flatten(1))  # sharp: small input differences show in the probabilities


def make_run(in_chans: int, size: int = 8) -> LoadedRun:
    info = {
        "model": "test",
        "num_classes": 4,
        "in_chans": in_chans,
        "image_size": size,
        "mean": [0.5] * in_chans,
        "std": [0.25] * in_chans,
        "classes": ["w", "x", "y", "z"],
    }
    return LoadedRun(_Recording(in_chans, size), info, Path("unused.safetensors"))


def probs(pred) -> dict[str, float]:  # noqa: ANN001
    return dict(pred.top)


@pytest.fixture
def rgb(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 13x20 RGB picture (not the run's size) saved as PNG, and its (H, W, 3) uint8 pixels."""
    pixels = np.random.default_rng(1).integers(0, 256, (13, 20, 3), dtype=np.uint8)
    path = tmp_path / "pic.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


@pytest.mark.parametrize("in_chans", [1, 3])
def test_every_input_kind_gets_the_same_probabilities_as_the_file(rgb, in_chans: int) -> None:
    path, hwc = rgb
    chw = torch.from_numpy(hwc.transpose(2, 0, 1).copy())
    with Image.open(path) as opened:
        pil = opened.copy()
    inputs = [path, pil, chw, chw.float() / 255, torch.stack([chw, chw]), hwc, hwc.astype(np.float32) / 255]
    preds = predict(make_run(in_chans), inputs, top_k=4, device="cpu")
    names = [p.input for p in preds]
    assert names == [
        str(path),
        "<image 0>",
        "<tensor 0>",
        "<tensor 1>",
        "<tensor 2>",
        "<tensor 3>",
        "<array 0>",
        "<array 1>",
    ]
    expected = probs(preds[0])
    assert max(expected.values()) < 0.99  # not saturated: a preprocessing difference would show
    for p in preds[1:]:
        assert probs(p) == pytest.approx(expected, abs=1e-6), p.input


def test_gray_and_rgba_inputs_convert_as_files_do(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(rgba).save(tmp_path / "a.png")
    run = make_run(3)  # gray is repeated to RGB; alpha is composited on black
    files = predict(run, [tmp_path / "g.png", tmp_path / "a.png"], top_k=4, device="cpu")
    memory = predict(run, [torch.from_numpy(gray)[None], rgba], top_k=4, device="cpu")
    for f, m in zip(files, memory):
        assert probs(m) == pytest.approx(probs(f), abs=1e-6)


def test_normalisation_comes_from_the_run() -> None:
    run = make_run(1)
    x = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8)  # already the run's size: no resize
    predict(run, x, device="cpu")
    seen = run.model.seen[-1]
    assert torch.allclose(seen, ((x.float() / 255 - 0.5) / 0.25)[None], atol=1e-6)
    run.info["mean"], run.info["std"] = [0.0], [1.0]
    predict(run, x, device="cpu")
    assert torch.allclose(run.model.seen[-1], (x.float() / 255)[None], atol=1e-6)


def test_results_keep_input_order_across_batches_and_skip_empty_folders(rgb, tmp_path: Path) -> None:
    path, hwc = rgb
    (tmp_path / "empty").mkdir()
    inputs = [hwc, tmp_path / "empty", path, Image.fromarray(hwc), hwc]
    preds = predict(make_run(3), inputs, batch_size=2, device="cpu")
    assert [p.input for p in preds] == ["<array 0>", str(path), "<image 0>", "<array 1>"]
    assert preds[1].path == str(path)  # the old name of the field still reads
    assert preds[0].to_dict()["input"] == "<array 0>"


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.rand(8, 8, 3), r"<tensor 0> has shape \(8, 8, 3\).*\(C, H, W\)"),
        (torch.rand(8, 8), r"<tensor 0> has shape"),
        (torch.rand(1, 8, 8) * 255, r"<tensor 0> has float values in \[.*\], outside \[0, 1\].*255"),
        (torch.full((1, 8, 8), float("nan")), "NaN"),
        (torch.zeros(1, 8, 8, dtype=torch.int64), "dtype int64.*uint8"),
        (np.zeros((3, 8, 8), np.uint8), r"<array 0> has shape \(3, 8, 8\).*\(H, W, C\)"),
        (np.zeros((8, 8, 3)) - 0.5, r"<array 0> has float values"),
        ({"not": "an image"}, "cannot classify a dict"),
    ],
)
def test_bad_in_memory_inputs_are_refused_with_the_fix(bad: object, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        predict(make_run(3), [bad], device="cpu")
    assert "\n" not in str(info.value)


def test_a_missing_file_is_still_named() -> None:
    with pytest.raises(DataError, match="'no/such.png' does not exist"):
        predict(make_run(1), "no/such.png", device="cpu")


def test_unreadable_files_are_all_named_or_skipped(rgb, tmp_path: Path) -> None:
    path, _ = rgb
    bad = [tmp_path / f"bad{i}.png" for i in range(3)]
    for p in bad:
        p.write_bytes(b"\x89PNG truncated")
    inputs = [bad[0], path, bad[1], path, bad[2]]
    with pytest.raises(BadImagesError) as err:
        predict(make_run(3), inputs, batch_size=2, device="cpu")
    assert (
        err.value.files == bad
        and all(str(p) in str(err.value) for p in bad)
        and "--skip-bad" in str(err.value)
    )
    preds = predict(make_run(3), inputs, batch_size=2, device="cpu", skip_bad=True)
    assert [p.input for p in preds] == [str(path), str(path)]
