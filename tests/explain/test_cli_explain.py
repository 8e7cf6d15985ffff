"""``imgcls explain`` on trained ``zfnet`` and ``lenet5_modern`` runs: every picture is written, twice the
same bytes; bad input is one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcls.cli.main import main

CNN_PICTURES = {
    "gradcam",
    "gradcam++",
    "occlusion",
    "deconvnet",
    "guided-backprop",
    "filters",
    "feature-maps",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-class folder dataset of 28x28 grey images: a bright square top-left or bottom-right."""
    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    for label, (t, l) in (("tl", (4, 4)), ("br", (16, 16))):
        (root / label).mkdir()
        for i in range(12):
            a = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            a[t : t + 8, l : l + 8] = 230
            Image.fromarray(a).save(root / label / f"{i}.png")
    return root


def _train(folder: Path, out: Path, model: str) -> Path:
    argv = ["-q", "train", "--dataset", f"folder:{folder}", "--model", model, "--max-steps", "2"]
    argv += ["--batch-size", "8", "--out-dir", str(out), "--name", model, "--no-progress", "--seed", "0"]
    assert main(argv) == 0
    return out / model


@pytest.fixture(scope="module")
def runs(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runs")
    return {m: _train(folder, out, m) for m in ("lenet5_modern", "zfnet")}


@pytest.fixture(scope="module")
def inputs(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A grey image and an RGB one (converted to the run's one channel, as predict does)."""
    rgb = tmp_path_factory.mktemp("rgb") / "rgb.png"
    Image.open(folder / "br" / "1.png").convert("RGB").save(rgb)
    return [str(folder / "tl" / "1.png"), str(rgb)]


@pytest.mark.parametrize("model", ["lenet5_modern", "zfnet"])
def test_explain_writes_every_picture_and_same_bytes_twice(
    model: str, runs: dict[str, Path], inputs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["-q", "explain", str(runs[model]), *inputs, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped rollout" in printed and "no attention layers" in printed
    files = sorted(p.name for p in outs[0].iterdir())
    assert {f[: -len(".png")] for f in files if f.endswith(".png")} == CNN_PICTURES
    assert {f[: -len(".npy")] for f in files if f.endswith(".npy")} == CNN_PICTURES
    for name in files:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    summary = json.loads((outs[0] / "explain.json").read_text())
    assert summary["model"] == model and len(summary["images"]) == 2
    assert set(summary["skipped"]) == {"attention", "rollout"}
    cam = np.load(outs[0] / "gradcam.npy")
    assert cam.shape == (2, 28, 28) and np.isfinite(cam).all()
    for name in CNN_PICTURES:  # a real picture, not an empty canvas
        img = Image.open(outs[0] / f"{name}.png")
        assert img.width > 200 and img.height > 150
        assert len(img.getcolors(1 << 20) or []) > 50, name


def test_explain_one_method_layer_and_class(runs: dict[str, Path], inputs: list[str], tmp_path: Path) -> None:
    argv = ["-q", "explain", str(runs["zfnet"]), inputs[0], "--method", "gradcam", "deconvnet"]
    argv += ["--layer", "features.9", "--class", "br", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["deconvnet.png", "gradcam.png"]
    summary = json.loads((tmp_path / "explain.json").read_text())
    assert summary["layer"] == "features.9" and summary["images"][0]["explained"] == "br"
    assert np.load(tmp_path / "gradcam.npy").shape == (1, 28, 28)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--layer", "features.99"],
            "unknown layer 'features.99'.*valid layers include features, features.0",
        ),
        (["--method", "rollout"], "no attention layers: attention maps apply to vit, swin and coatnet"),
        (["--method", "dream"], "unknown explain method 'dream'"),
        (["--class", "cat"], "unknown class 'cat'.*valid: br, tl"),
        (["--layer", "classifier.6"], "no spatial layout"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    args: list[str], message: str, runs: dict[str, Path], inputs: list[str], tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    import re

    code = main(
        ["explain", str(runs["zfnet"]), inputs[0], "--method", "gradcam", *args, "--out", str(tmp_path)]
    )
    if "--method" in args:  # the later --method wins
        code = main(["explain", str(runs["zfnet"]), inputs[0], *args, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert re.search(message, err[-1]), err
    assert "Traceback" not in "\n".join(err)
