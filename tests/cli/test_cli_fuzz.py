"""The command line under random flags, values and files (hypothesis; issue 16, item 5).

Whatever it is given: no traceback, exit status 0 or 2 (and 1 where ``imgcls models`` matches nothing), one
error line, and nothing half-written (no temporary file left, a successful run complete). Runs are kept short:
digits, one optimizer step.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli import run_cli

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is reproducible, never flaky
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# A few values per flag, most of them wrong: the fuzz is about what happens on the way to an error.
TRAIN_FLAGS: dict[str, list[str]] = {
    "--epochs": ["1", "0.05", "0", "-1", "nan", "inf", "1e400", "abc"],
    "--batch-size": ["2", "64", "1", "0", "-1", "1.5", "true"],
    "--lr": ["0.1", "0", "-1", "nan", "inf", "1e6"],
    "--momentum": ["0", "0.9", "1", "-5", "nan"],
    "--weight-decay": ["0", "-1", "nan"],
    "--label-smoothing": ["0.1", "1", "-0.1"],
    "--warmup-epochs": ["0", "-1", "100"],
    "--min-lr-ratio": ["0.5", "nan", "2"],
    "--grad-clip": ["1", "0", "-1"],
    "--accum-steps": ["1", "0", "1000"],
    "--ema-decay": ["0.9", "0", "1"],
    "--image-size": ["8", "16", "4", "100000"],
    "--channels": ["1", "3", "2"],
    "--threads": ["1", "0", "-1"],
    "--eval-every": ["1", "0"],
    "--seed": ["0", "-1", "99999999999999999999999"],
    "--optimizer": ["sgd", "adamw", "muon", "lbfgs"],
    "--schedule": ["cosine", "step", "bogus"],
    "--model": ["quicknet_s", "lenet5", "nosuch"],
    "--augment": ["none", "strong", "bogus"],
    "--crop-padding": ["0", "2", "-1", "100"],
    "--mixup": ["0", "0.2", "-1"],
    "--erasing": ["0.5", "2"],
    "--step-epochs": ["1", "-1", "nan"],
    "--model-kwargs": ["drop_path_rate=0.1", "nosuch=1", "{", "x"],
    "--name": ["a", "a/b", ""],
}

_ERROR_LINE = re.compile(r"^imgcls( \w+)?: (error|internal error): ")


def _invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``run_cli``, with argparse's usage errors (SystemExit) as their exit status."""
    try:
        return run_cli(capsys, *argv)
    except SystemExit as e:
        out, err = capsys.readouterr()
        return int(e.code or 0), out, err


def _check(code: int, err: str, allowed: tuple[int, ...] = (0, 2)) -> None:
    assert code in allowed, err
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2:
        assert len([line for line in err.splitlines() if _ERROR_LINE.match(line)]) == 1, err


def _check_nothing_half_written(folder: Path) -> None:
    assert not list(folder.rglob("*.tmp")), sorted(folder.rglob("*"))
    for result in folder.rglob("result.json"):  # a finished run is whole
        assert {"model.json", "config.yaml", "last.safetensors"} <= {p.name for p in result.parent.iterdir()}


@contextmanager
def _scratch() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is one per test) and the torch settings a run may change."""
    threads = torch.get_num_threads()
    folder = Path(tempfile.mkdtemp(prefix="imgcls-fuzz-"))
    try:
        yield folder
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(folder, ignore_errors=True)


@st.composite
def train_flags(draw: st.DrawFn) -> list[str]:
    names = draw(st.lists(st.sampled_from(sorted(TRAIN_FLAGS)), min_size=1, max_size=4, unique=True))
    return [part for name in names for part in (name, draw(st.sampled_from(TRAIN_FLAGS[name])))]


@FUZZ
@given(flags=train_flags())
def test_train_with_random_flags(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with _scratch() as out:
        base = ["-q", "train", "--dataset", "digits", "--out-dir", str(out), "--no-progress"]
        code, _, err = _invoke(capsys, *base, *flags, "--max-steps", "1")
        _check(code, err)
        _check_nothing_half_written(out)


@FUZZ
@given(pattern=st.text(max_size=12), as_json=st.booleans())
def test_models_with_random_patterns(pattern: str, as_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _invoke(capsys, "models", *(["--json"] if as_json else []), "--", pattern)
    _check(code, err, allowed=(0, 1))
    if as_json:
        json.loads(out)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)

RUN_FILES = ("model.json", "best.safetensors", "last.safetensors", "config.yaml", "state.pt")
# The keys of model.json that rebuild the model and feed it.
MODEL_JSON_KEYS = (
    "num_classes", "classes", "mean", "std", "image_size", "in_chans", "model", "model_kwargs", "model_config"
)  # fmt: skip


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, str, object]:
    """(file of the run, how to damage it, with what): random bytes, a cut, or a model.json value replaced."""
    name = draw(st.sampled_from(RUN_FILES))
    how = draw(
        st.sampled_from(["bytes", "truncate", "json"] if name == "model.json" else ["bytes", "truncate"])
    )
    if how == "bytes":
        return name, how, draw(st.binary(max_size=300))
    if how == "truncate":
        return name, how, draw(st.floats(0, 1))
    return name, how, (draw(st.sampled_from(MODEL_JSON_KEYS)), draw(json_values))


def _damage(run: Path, name: str, how: str, what: object) -> None:
    path = run / name
    if how == "bytes":
        path.write_bytes(what)  # type: ignore[arg-type]
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * what)])  # type: ignore[operator]
    else:
        key, value = what  # type: ignore[misc]
        path.write_text(json.dumps(json.loads(path.read_text()) | {key: value}))


@st.composite
def image_file(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".png", ".jpg", ".bmp", ".gif"]))
    return suffix, draw(st.binary(max_size=200) | st.just(b"\x89PNG\r\n\x1a\n" + b"\0" * 40))


@FUZZ
@given(hurt=damage(), command=st.sampled_from(["eval", "predict", "resume"]), image=image_file())
def test_eval_predict_resume_with_damaged_files(
    hurt: tuple[str, str, object],
    command: str,
    image: tuple[str, bytes],
    digits_run: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _scratch() as scratch:
        run = scratch / "run"
        shutil.copytree(digits_run, run)
        _damage(run, *hurt)
        picture = scratch / f"x{image[0]}"
        picture.write_bytes(image[1])
        argv = {
            "eval": ["eval", str(run), "--weights", "last", "--out", str(scratch / "report")],
            "predict": ["predict", str(run), str(picture), str(scratch)],
            "resume": ["train", "--resume", str(run), "--max-steps", "3", "--no-progress"],
        }[command]
        code, _, err = _invoke(capsys, "-q", *argv)
        _check(code, err)
        _check_nothing_half_written(scratch)


@FUZZ
@given(text=st.binary(max_size=200) | st.text(max_size=80).map(str.encode))
def test_train_with_a_random_config_file(text: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    with _scratch() as out:
        config = out / "c.yaml"
        config.write_bytes(text)
        argv = ["-q", "train", "--config", str(config), "--dataset", "digits", "--out-dir", str(out)]
        code, _, err = _invoke(capsys, *argv, "--max-steps", "1", "--no-progress")
        _check(code, err)
        _check_nothing_half_written(out)
