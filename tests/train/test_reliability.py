"""Losing nothing it saves: run-directory claims, divergence, leaked temporaries, file modes, stable bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from imgcls.errors import CheckpointError
from imgcls.models import create_model
from imgcls.train import TrainConfig, TrainingDivergedError, train
from imgcls.train import checkpoint as ckpt
from imgcls.train import trainer as trainer_mod
from imgcls.utils.files import atomic_write_text, remove_stale_temporaries
from tests.cli import run_cli

CLI = [sys.executable, "-c", "import sys; from imgcls.cli.main import main; sys.exit(main(sys.argv[1:]))"]


def _digits(out: Path, **kw) -> TrainConfig:
    base = dict(dataset="digits", epochs=1, batch_size=256, out_dir=str(out), name="r", progress=False)
    return TrainConfig(**(base | kw))


def _all_finite(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_file(path).values() if t.is_floating_point())


# ------------------------------------------------------------------------------------ run-directory claims
def test_a_claimed_run_directory_refuses_a_second_claim(tmp_path: Path) -> None:
    with ckpt.claim_run_dir(tmp_path) as claim:
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(
            ckpt.RunInUseError, match=rf"in use by process {os.getpid()}: wait .* another --name"
        ):
            ckpt.claim_run_dir(tmp_path)
        with pytest.raises(ckpt.RunInUseError, match=f"process {os.getpid()}"):  # the trainer asks too
            train(_digits(tmp_path.parent, name=tmp_path.name))
    assert claim.path == tmp_path / ".lock" and not claim.path.exists()  # released: the file is gone
    ckpt.claim_run_dir(tmp_path).release()  # and free again


def test_the_claim_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / ".lock").write_text(dead.stdout)  # what a process killed with -9 leaves behind
    with ckpt.claim_run_dir(tmp_path):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def _lock_owner(lock: Path) -> str:
    try:
        return lock.read_text().strip()
    except FileNotFoundError:
        return ""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_two_runs_with_one_name_started_together(tmp_path: Path) -> None:
    argv = [*CLI, "train", "--dataset", "digits", "--max-steps", "2", "--out-dir", str(tmp_path)]
    argv += ["--name", "same", "--no-progress"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "same" / ".lock"
    try:
        deadline = time.monotonic() + 120
        while _lock_owner(lock) != str(first.pid):
            assert first.poll() is None and time.monotonic() < deadline, (
                "the first run never claimed its directory"
            )
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)  # the first run holds its claim while the second one starts
        second = subprocess.run(argv, capture_output=True, text=True)
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 2 and f"in use by process {first.pid}" in second.stderr, second.stderr
    assert not lock.exists()


def test_a_default_name_taken_in_the_same_second_gets_a_suffix(tmp_path: Path, monkeypatch) -> None:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None) -> Frozen:
            return cls(2024, 1, 2, 3, 4, 5)

    monkeypatch.setattr(trainer_mod, "datetime", Frozen)
    a = train(_digits(tmp_path, name=None, max_steps=1))
    b = train(_digits(tmp_path, name=None, max_steps=1))
    assert a.run_dir.name == "quicknet_s-digits-20240102-030405"
    assert b.run_dir.name == "quicknet_s-digits-20240102-030405-2"


# ---------------------------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("steps", [["--max-steps", "3"], ["--epochs", "1"]])
def test_a_diverged_run_fails_and_saves_nothing_non_finite(tmp_path: Path, steps: list[str], capsys) -> None:
    argv = ["train", "--dataset", "digits", "--lr", "1e6", *steps, "--out-dir", str(tmp_path), "--name", "d"]
    code, _, err = run_cli(capsys, *argv, "--no-progress")
    assert code == 2, err
    assert "lower --lr" in err and "Traceback" not in err
    run = tmp_path / "d"
    for name in ("last.safetensors", "best.safetensors"):
        assert not (run / name).exists() or _all_finite(run / name), name
    assert not (run / "result.json").exists()


def test_non_finite_weights_are_never_saved(tmp_path: Path, monkeypatch) -> None:
    original = trainer_mod._Trainer._train_epoch
    poisoned: list[str] = []

    def poison_second_epoch(self, epoch, *args):
        row, step = original(self, epoch, *args)
        if epoch == 1:  # after a finite training loss: only the weights show it
            name, param = list(self.model.named_parameters())[-1]
            with torch.no_grad():
                param.view(-1)[0] = float("inf")
            poisoned.append(name)
        return row, step

    monkeypatch.setattr(trainer_mod._Trainer, "_train_epoch", poison_second_epoch)
    with pytest.raises(
        TrainingDivergedError, match=r"NaN or infinite \((.+)\) in epoch 2.*epoch 1.*last finite"
    ) as e:
        train(_digits(tmp_path, epochs=3, eval_every=10))
    assert poisoned[0] in str(e.value)
    run = tmp_path / "r"
    assert torch.load(run / "state.pt", weights_only=True)["epoch"] == 1
    assert _all_finite(run / "last.safetensors")


# ------------------------------------------------------------------------------------------------- state
@pytest.mark.parametrize("optimizer", [{"optimizer": "adamw", "lr": 1e-3}, {"optimizer": "muon", "lr": 0.1}])
def test_optimizer_state_round_trips_through_weights_only_loading(tmp_path: Path, optimizer: dict) -> None:
    first = train(_digits(tmp_path, ema_decay=0.9, **optimizer))
    state = ckpt.load_training_state(first.run_dir / "state.pt")
    assert state["optimizer"]["state"] and state["ema"] is not None and state["rng_cpu"].dtype == torch.uint8
    resumed = train(TrainConfig(resume=str(first.run_dir), epochs=2, progress=False))
    assert resumed.epochs == 2 and [r["epoch"] for r in resumed.history] == [1, 2]


def test_a_state_pt_that_does_not_fit_is_one_line(tmp_path: Path) -> None:
    run = train(_digits(tmp_path, max_steps=1)).run_dir
    genuine = ckpt.load_training_state(run / "state.pt")
    for state in (
        {k: 1 for k in ckpt.STATE_KEYS},
        genuine | {"history": [{"epoch": 1}]},
        genuine | {"epoch": "1"},
        genuine | {"optimizer": {"state": {}, "param_groups": []}},
    ):
        torch.save(state, run / "state.pt")
        with pytest.raises(CheckpointError, match="does not fit this run") as err:
            train(TrainConfig(resume=str(run), epochs=2, progress=False))
        assert "\n" not in str(err.value)
    torch.save({"epoch": 1}, run / "state.pt")
    with pytest.raises(CheckpointError, match="lacks step"):
        train(TrainConfig(resume=str(run), progress=False))


# -------------------------------------------------------------------------------------------------- leaks
def test_stale_temporaries_are_removed_when_a_run_starts_or_resumes(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    killed = [run / ".last.safetensors.3f9a1b2c.tmp", run / ".state.pt.0a1b2c3d.tmp"]
    for f in killed:
        f.write_bytes(bytes(1 << 16))
    kept = [run / "notes.tmp", run / ".hidden"]
    for f in kept:
        f.write_text("mine")
    train(_digits(tmp_path, max_steps=1))  # a new run in the (unfinished) directory
    assert not any(f.exists() for f in killed) and all(f.exists() for f in kept)
    killed[0].write_bytes(bytes(10))
    train(TrainConfig(resume=str(run), epochs=2, progress=False))
    assert not killed[0].exists()
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") and p.name.startswith(".")]


def test_remove_stale_temporaries_counts_what_it_removed(tmp_path: Path) -> None:
    (tmp_path / ".a.json.12345678.tmp").write_text("x")
    (tmp_path / "a.json").write_text("{}")
    assert remove_stale_temporaries(tmp_path) == 1 and [p.name for p in tmp_path.iterdir()] == ["a.json"]


# ------------------------------------------------------------------------------------- modes and bytes
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_files_are_created_honouring_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        ckpt.save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == mode


def test_identical_weights_give_identical_bytes(tmp_path: Path) -> None:
    model = create_model("quicknet_s", num_classes=10, in_chans=1, image_size=8)
    meta = {k: f"value {k}" for k in ("epoch", "model", "dataset", "zeta", "alpha", "mid")}
    paths = [tmp_path / f"{i}.safetensors" for i in range(6)]
    for p in paths:
        ckpt.save_weights(model, p, meta)
    data = {p.read_bytes() for p in paths}
    assert len(data) == 1  # safetensors alone writes the metadata in a random order: 6! orders
    with safe_open(paths[0], "pt") as f:
        assert f.metadata() == meta
    loaded, own = load_file(paths[0]), model.state_dict()
    assert loaded.keys() == own.keys() and all(torch.equal(loaded[k], own[k]) for k in own)
