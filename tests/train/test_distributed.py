"""Distributed training on CPUs: 2 gloo processes started by torchrun's machinery (launch_training).

The model is the MLP (no BatchNorm, no dropout: nothing that differs per process), so 2 processes at a global
batch must train as 1 process does at that batch. Each launch costs a few seconds of process start-up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imgcls.cli.main import main
from imgcls.errors import ConfigError
from imgcls.train import TrainConfig, load_run, train
from imgcls.train.distributed import DistContext
from imgcls.train.launch import launch_training
from tests.conftest import pattern_images
from tests.data.data_files import write_idx_file

N_TEST = 101  # odd: 2 ranks cannot split it evenly, and padding would count an image twice


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dist-data")
    folder = root / "fashion-mnist"
    folder.mkdir()
    for split, n, seed in (("train", 160, 0), ("t10k", N_TEST, 1)):
        x, y = pattern_images(n, 10, 28, 1, seed)
        write_idx_file(folder / f"{split}-images-idx3-ubyte.gz", x[:, 0], gz=True)
        write_idx_file(folder / f"{split}-labels-idx1-ubyte.gz", y, gz=True)
    return root


def _cfg(data: Path, out: Path, name: str, **kw) -> TrainConfig:
    # 144 training images in global batches of 12: 12 steps an epoch, 24 in 2 epochs. A constant learning rate,
    # so a run of 1 epoch is the first epoch of one of 2 (what resuming needs). "light" augmentation: the
    # global batch is augmented as one process augments it.
    base = dict(
        dataset="fashion-mnist",
        data_dir=str(data),
        out_dir=str(out),
        name=name,
        model="mlp",
        epochs=2,
        batch_size=12,
        lr=0.05,
        schedule="constant",
        warmup_epochs=0.0,
        augment="light",
        tta_flip=False,
        progress=False,
        fallback_dataset=None,
        amp="off",
        threads=1,
    )
    return TrainConfig(**(base | kw))


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory):
    """One process, 2 epochs."""
    return train(_cfg(data, tmp_path_factory.mktemp("ref"), "ref"))


def _assert_same_weights(a_dir: Path, b_dir: Path, atol: float = 1e-5) -> None:
    a, b = load_file(a_dir / "last.safetensors"), load_file(b_dir / "last.safetensors")
    assert a.keys() == b.keys() and not any(k.startswith("module.") for k in b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=atol, rtol=0, msg=k)


def test_two_processes_train_as_one_and_count_every_test_image_once(
    reference, data: Path, tmp_path: Path
) -> None:
    two = launch_training(_cfg(data, tmp_path, "two"), nproc=2)
    assert two.steps == reference.steps == 24  # the schedule counts global steps
    _assert_same_weights(reference.run_dir, two.run_dir)
    assert two.eval is not None and reference.eval is not None
    assert two.eval.n == N_TEST  # 50 + 51, no padded duplicates
    assert two.eval.confusion == reference.eval.confusion
    assert two.test_acc == reference.test_acc
    assert [r["images"] for r in two.history] == [144, 144]  # summed over the processes
    for a, b in zip(reference.history, two.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["val_acc"] == a["val_acc"]
    # rank 0 wrote the run; it loads in one process as any run does
    assert (two.run_dir / "result.json").is_file() and not list(two.run_dir.glob(".*.tmp"))
    assert load_run(two.run_dir, which="last").classes == load_run(reference.run_dir, which="last").classes


def test_two_processes_leave_out_the_easy_images_one_process_leaves_out(data: Path, tmp_path: Path) -> None:
    """--prune-easy: each process records the losses of its share of a batch; summed, every process plans
    the next epoch from all the scores, as one process does."""
    one = train(_cfg(data, tmp_path, "one", epochs=3, prune_easy=0.5))
    two = launch_training(_cfg(data, tmp_path, "two", epochs=3, prune_easy=0.5), nproc=2)
    images = [r["images"] for r in one.history]
    assert images[1] < 144 and [r["images"] for r in two.history] == images
    assert two.steps == one.steps
    _assert_same_weights(one.run_dir, two.run_dir)


def test_a_checkpoint_of_two_processes_resumes_in_one(reference, data: Path, tmp_path: Path) -> None:
    half = launch_training(_cfg(data, tmp_path, "half", epochs=1), nproc=2)
    assert half.steps == 12
    resumed = train(TrainConfig(resume=str(half.run_dir), epochs=2, progress=False))
    assert resumed.steps == 24
    _assert_same_weights(reference.run_dir, half.run_dir)
    assert resumed.eval is not None and resumed.eval.confusion == reference.eval.confusion


def test_a_checkpoint_of_one_process_resumes_in_two(reference, data: Path, tmp_path: Path) -> None:
    half = train(_cfg(data, tmp_path, "half", epochs=1))
    resumed = launch_training(TrainConfig(resume=str(half.run_dir), epochs=2, progress=False), nproc=2)
    assert resumed.steps == 24 and len(resumed.history) == 2
    _assert_same_weights(reference.run_dir, half.run_dir)


def test_a_batch_that_does_not_split_is_one_line_from_the_cli(data: Path, tmp_path: Path, capsys) -> None:
    argv = ["train", "--nproc", "2", "--dataset", "fashion-mnist", "--data-dir", str(data), "--model", "mlp"]
    argv += [
        "--batch-size",
        "15",
        "--epochs",
        "1",
        "--out-dir",
        str(tmp_path),
        "--no-progress",
        "--amp",
        "off",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("imgcls train: error: the batch size 15 does not split over 2 processes")
    assert "--batch-size divisible by 2" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_sync_bn_on_cpu_is_refused_with_the_fix(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--sync-bn needs CUDA.*drop --sync-bn"):
        train(_cfg(data, tmp_path, "sbn", sync_bn=True, device="cpu"))


def test_one_process_context_is_a_no_op() -> None:
    ctx = DistContext()
    t = torch.tensor([1.0, 2.0])
    assert not ctx.enabled and ctx.is_main and ctx.all_reduce_sum(t) is t
    assert ctx.on_main(lambda: 42) == 42
    ctx.barrier()
    ctx.close()


def test_a_run_restarted_by_torchrun_resumes_from_its_checkpoint(
    data: Path, tmp_path: Path, monkeypatch
) -> None:
    first = train(_cfg(data, tmp_path, "job", epochs=1))
    with pytest.raises(ConfigError, match="already holds a run"):  # a second start of the same job, by hand
        train(_cfg(data, tmp_path, "job", epochs=2))
    monkeypatch.setenv(
        "TORCHELASTIC_RESTART_COUNT", "1"
    )  # what torchrun --max-restarts sets when it restarts
    again = train(_cfg(data, tmp_path, "job", epochs=2))
    assert again.run_dir == first.run_dir and again.steps == 24 and len(again.history) == 2
