"""The command line's promises (issue 16, item 5): one line and exit 2 for a user's or a disk's problem, 1 and a
pointer to ``-v`` for a bug, quiet ends for closed pipes, SIGTERM like Ctrl-C. See imgcls/cli/main.py."""

from __future__ import annotations

import errno
import io
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import imgcls.cli.main as cli_main
import imgcls.train
from imgcls.cli.main import EXIT_BROKEN_PIPE, EXIT_TERMINATED, main
from imgcls.errors import describe_os_error
from tests.cli import run_cli

CLI = [sys.executable, "-m", "imgcls.cli.main"]


def _one_error_line(err: str) -> str:
    """The error line of stderr, checking that it is the only one and that no traceback came with it."""
    assert "Traceback" not in err and "Exception ignored" not in err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "flags, name",
    [
        (["--momentum", "nan"], "momentum"),  # trained to NaN, exit 0
        (["--min-lr-ratio", "nan"], "min_lr_ratio"),  # logged "lr nan", exit 0
        (["--epochs", "inf"], "epochs"),  # OverflowError traceback
        (["--momentum", "-5"], "momentum"),  # ValueError traceback
        (["--threads", "-1"], "threads"),  # RuntimeError traceback
        (["--batch-size", "1"], "batch_size"),  # BatchNorm's ValueError traceback
        (["--image-size", "100000"], "image_size"),  # allocation traceback
        (["--max-steps", "0"], "max_steps"),  # exit 0 without weights
    ],
)
def test_bad_settings_stop_before_training_in_one_line(
    flags: list[str], name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "-q", "train", "--dataset", "digits", "--out-dir", str(tmp_path), *flags)
    assert code == 2
    assert name in _one_error_line(err)
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


@pytest.mark.parametrize("batch_size", ["0", "-1"])
def test_predict_refuses_a_batch_size_below_one(
    batch_size: str, digits_run: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 0 ended in a ValueError traceback; -1 exited 0 and printed nothing
    code, out, err = run_cli(capsys, "predict", str(digits_run), str(images), "--batch-size", batch_size)
    assert code == 2 and out == ""
    assert "batch_size must be >= 1" in _one_error_line(err)


def test_eval_prints_its_metrics_before_failing_to_write_the_report(
    digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() reports it: no file name

    monkeypatch.setattr("imgcls.metrics.save_confusion_png", disk_full)
    out_dir = tmp_path / "report"
    code, out, err = run_cli(capsys, "eval", str(digits_run), "--out", str(out_dir))
    assert code == 2
    assert "top-1 acc" in out and "per-class accuracy" in out  # what was computed is not lost
    line = _one_error_line(err)
    assert "No space left on device" in line and str(out_dir) in line and "--out" in line
    assert not list(out_dir.rglob("*.tmp"))


@pytest.mark.parametrize(
    "error, expected",
    [
        (
            OSError(errno.EROFS, "Read-only file system", "/ro/runs/r/.last.safetensors.x1.tmp"),
            "'/ro/runs/r'",
        ),
        (OSError(errno.EACCES, "Permission denied", "/locked/runs"), "'/locked/runs'"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "free some space or pass another --out-dir"),
        # safetensors wraps the operating system's error in its own exception type
        (
            RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
            "No space",
        ),
    ],
)
def test_a_disk_that_refuses_is_one_line_naming_the_place(
    error: Exception,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(cfg: object) -> None:
        raise error

    monkeypatch.setattr(imgcls.train, "train", refuse)
    code, _, err = run_cli(capsys, "train", "--dataset", "digits")
    assert code == 2
    line = _one_error_line(err)
    assert line.startswith("imgcls train: error: cannot") and expected in line


def test_an_output_folder_that_cannot_exist_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "-q", "train", "--dataset", "digits", "--out-dir", str(blocker / "runs"))
    assert code == 2
    assert "Not a directory" in _one_error_line(err)


def test_running_out_of_memory_is_one_line_naming_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def too_big(cfg: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(imgcls.train, "train", too_big)
    code, _, err = run_cli(capsys, "train", "--dataset", "digits")
    assert code == 2
    assert (
        "out of memory (CUDA out of memory. Tried to allocate 20.00 GiB): lower --batch-size"
        in _one_error_line(err)
    )


def test_a_bug_is_one_line_pointing_at_verbose_which_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(cfg: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(imgcls.train, "train", bug)
    code, _, err = run_cli(capsys, "train", "--dataset", "digits")
    assert code == 1 and "Traceback" not in err
    assert "internal error: ZeroDivisionError: division by zero (rerun with -v" in err
    code, _, err = run_cli(capsys, "-v", "train", "--dataset", "digits")
    assert code == 1 and "Traceback" in err and "internal error" in err


def test_describe_os_error_names_path_reason_and_fix() -> None:
    line = describe_os_error(
        OSError(errno.ENOSPC, "No space left on device"), "runs/x", "pass another --out-dir"
    )
    assert line == "cannot use 'runs/x': No space left on device: free some space or pass another --out-dir"


class _ClosedPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_predict_into_a_closed_pipe_ends_quietly(
    digits_run: Path, images: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # imgcls predict RUN DIR | head -1
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    code = main(["predict", str(digits_run), str(images)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == EXIT_BROKEN_PIPE and "Traceback" not in err and "error" not in err


def test_models_into_a_closed_pipe_ends_quietly() -> None:
    # imgcls models | head -3 (issue 9): the reader has gone before the first line is written
    proc = subprocess.Popen([*CLI, "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert err == ""


def test_sigterm_stops_training_like_ctrl_c_and_the_run_resumes(tmp_path: Path) -> None:
    run = tmp_path / "t"
    argv = ["train", "--dataset", "digits", "--epochs", "1000", "--out-dir", str(tmp_path), "--name", "t"]
    proc = subprocess.Popen([*CLI, *argv, "--no-progress"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.csv").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_TERMINATED, err
    assert "Traceback" not in err
    assert f"continue with: imgcls train --resume {run}" in err
    assert err.strip().splitlines()[-1] == "imgcls train: terminated (SIGTERM)"
    done = subprocess.run(
        [*CLI, "-q", "train", "--resume", str(run), "--max-steps", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run_dir"] == str(run)


def test_verbose_is_imgcls_debug_output_without_the_libraries_debug_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, pkg = logging.getLogger(), logging.getLogger("imgcls")
    monkeypatch.setattr(root, "handlers", [])  # basicConfig configures a root without handlers
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(pkg, "level", pkg.level)
    cli_main._setup_logging(verbose=True, quiet=False)
    assert logging.getLogger("imgcls.train.trainer").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("matplotlib.font_manager").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("matplotlib.font_manager").isEnabledFor(logging.INFO)
    cli_main._setup_logging(verbose=False, quiet=True)
    assert not logging.getLogger("imgcls.train.trainer").isEnabledFor(logging.INFO)
