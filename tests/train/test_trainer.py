from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from imgcls.errors import CheckpointError, ConfigError, DataError
from imgcls.models.registry import AuxOutputs, get_model_spec, register_model, unregister_model
from imgcls.train import TrainConfig, TrainingDivergedError, load_run, train
from imgcls.train import trainer as trainer_mod


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        dataset="fashion-mnist",
        data_dir=str(data),
        out_dir=str(out),
        name="run",
        epochs=3,
        batch_size=32,
        lr=0.05,
        schedule="cosine",
        progress=False,
        deterministic=True,
        fallback_dataset=None,
        augment="light",
        amp="off",
    )
    return TrainConfig(**(base | kw))


def test_train_learns_and_writes_the_run_directory(tiny_fmnist: Path, tmp_path: Path) -> None:
    r = train(_cfg(tiny_fmnist, tmp_path, epochs=6, lr=0.1, augment="none"))
    assert r.test_acc > 0.5  # chance is 0.1; the bands are easy
    files = {p.name for p in r.run_dir.iterdir()}
    assert {
        "config.yaml",
        "model.json",
        "last.safetensors",
        "best.safetensors",
        "state.pt",
        "metrics.csv",
        "curves.png",
        "result.json",
    } <= files
    assert not [f for f in files if f.endswith(".tmp")]
    info = json.loads((r.run_dir / "model.json").read_text())
    assert info["model"] == "quicknet_s" and info["num_classes"] == 10 and info["in_chans"] == 1
    assert info["classes"][0] == "T-shirt/top" and len(info["mean"]) == 1
    rows = (r.run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,train_loss") and len(rows) == 7
    loaded = load_run(r.run_dir, which="last")  # rebuilt from model.json alone
    assert not loaded.model.training and loaded.classes == info["classes"]
    assert r.images_per_sec > 0 and r.train_seconds <= r.total_seconds


def _interrupting(loader, after: int):
    class Interrupting(type(loader)):  # the loader's own methods (subsets, indices), an interrupt added
        def __init__(self) -> None:
            pass

        def __getattr__(self, name: str):
            return getattr(loader, name)

        def __setattr__(self, name: str, value) -> None:
            setattr(loader, name, value)

        def __len__(self) -> int:
            return len(loader)

        def set_epoch(self, e: int) -> None:
            loader.set_epoch(e)

        def __iter__(self):
            for i, b in enumerate(loader):
                if i == after:
                    raise KeyboardInterrupt
                yield b

    return Interrupting()


# prune_easy: the interrupted second epoch leaves easy images out, planned from the scores in state.pt
@pytest.mark.parametrize("optimizer,prune_easy", [("sgd", 0.0), ("muon", 0.0), ("sgd", 0.5)])
def test_resume_ends_with_the_same_weights(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch, optimizer: str, prune_easy: float
) -> None:
    cfg = dict(epochs=3, ema_decay=0.9, label_smoothing=0.1, augment="standard", weight_decay=5e-4)
    cfg |= dict(optimizer=optimizer, prune_easy=prune_easy)
    ref = train(_cfg(tiny_fmnist, tmp_path / "a", **cfg))

    original = trainer_mod._Trainer._train_epoch

    def stop_in_second_epoch(self, epoch, *args):
        if epoch == 1:
            self.train_loader = _interrupting(self.train_loader, after=2)  # mid-epoch, after 2 steps
        return original(self, epoch, *args)

    monkeypatch.setattr(trainer_mod._Trainer, "_train_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_fmnist, tmp_path / "b", **cfg))
    run_b = tmp_path / "b" / "run"
    assert torch.load(run_b / "state.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(trainer_mod._Trainer, "_train_epoch", original)

    resumed = train(TrainConfig(resume=str(run_b), progress=False))
    a, b = load_file(ref.run_dir / "last.safetensors"), load_file(run_b / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.test_acc == ref.test_acc
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in ref.history]
    assert [r["images"] for r in resumed.history] == [r["images"] for r in ref.history]
    if prune_easy:
        assert ref.history[1]["images"] < ref.history[0]["images"]


def test_nan_loss_stops_with_last_good_checkpoint(tiny_fmnist: Path, tmp_path: Path, monkeypatch) -> None:
    original = trainer_mod._Trainer._loss
    calls = {"n": 0}

    def loss_that_diverges(self, out, y):
        loss, logits = original(self, out, y)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 6 else loss), logits  # 5 steps per epoch: NaN in epoch 2

    monkeypatch.setattr(trainer_mod._Trainer, "_loss", loss_that_diverges)
    with pytest.raises(TrainingDivergedError, match=r"became nan in epoch 2.*checkpoint of epoch 1.*--lr"):
        train(_cfg(tiny_fmnist, tmp_path))
    run = tmp_path / "run"
    assert torch.load(run / "state.pt", weights_only=False)["epoch"] == 1
    weights = load_file(run / "last.safetensors")
    assert all(torch.isfinite(v.float()).all() for v in weights.values())


def test_existing_run_is_not_overwritten(tiny_fmnist: Path, tmp_path: Path, monkeypatch) -> None:
    train(_cfg(tiny_fmnist, tmp_path, epochs=1))
    # refused at once: before the data is read or a model built
    monkeypatch.setattr(trainer_mod._Trainer, "_load_data", lambda self: pytest.fail("loaded the data"))
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        train(_cfg(tiny_fmnist, tmp_path, epochs=1))


def test_aux_outputs_are_trained_with_their_weight() -> None:
    t = trainer_mod._Trainer.__new__(trainer_mod._Trainer)
    t.cfg = TrainConfig(label_smoothing=0.0)
    y = torch.tensor([0, 1])
    main = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    aux = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    loss, logits = t._loss(AuxOutputs(main, (aux, aux), 0.3), y)
    ce = torch.nn.functional.cross_entropy
    assert torch.equal(logits, main)
    assert loss.item() == pytest.approx((ce(main, y) + 0.6 * ce(aux, y)).item())


def test_fallback_dataset_with_a_note(tmp_path: Path, monkeypatch, caplog) -> None:
    import imgcls.data.datasets as ds

    monkeypatch.setattr(ds, "SYSTEM_DIR", tmp_path / "nothing")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMGCLS_DATA", raising=False)
    ds.clear_cache()
    with caplog.at_level(logging.WARNING):
        r = train(TrainConfig(epochs=1, max_steps=2, out_dir=str(tmp_path / "runs"), progress=False))
    assert json.loads((r.run_dir / "model.json").read_text())["dataset"] == "digits"
    assert "training on 'digits' instead" in caplog.text
    saved = (r.run_dir / "config.yaml").read_text()
    assert "dataset: digits" in saved and "augment: none" in saved
    assert "batch_size: 16" in saved  # auto, for digits' 1,293 training images (1,437 less validation)
    assert "epochs: 1" in saved  # asked for: kept


def test_a_dataset_named_in_python_is_never_swapped(tmp_path: Path, monkeypatch) -> None:
    import imgcls.data.datasets as ds

    monkeypatch.setattr(ds, "SYSTEM_DIR", tmp_path / "nothing")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMGCLS_DATA", raising=False)
    ds.clear_cache()
    # the README's snippet without CIFAR-10 used to train digits for 40 epochs and report 99%
    with pytest.raises(DataError, match="cifar10"):
        train(TrainConfig(model="cifar_resnet20", dataset="cifar10", epochs=30, out_dir=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


def test_finetune_from_a_run_with_another_class_count(
    tiny_fmnist: Path, tiny_folder: Path, tmp_path: Path
) -> None:
    src = train(_cfg(tiny_fmnist, tmp_path / "a", epochs=1, augment="none"))
    r = train(
        TrainConfig(
            dataset=f"folder:{tiny_folder}",
            pretrained=str(src.run_dir),
            channels=1,
            image_size=28,
            epochs=1,
            batch_size=16,
            out_dir=str(tmp_path / "b"),
            progress=False,
        )
    )
    info = json.loads((r.run_dir / "model.json").read_text())
    assert info["num_classes"] == 3 and info["classes"] == ["circle", "square", "star"]
    a = load_file(src.run_dir / "last.safetensors")
    b = torch.load(r.run_dir / "state.pt", weights_only=False)
    assert a["stem.0.weight"].shape == b["model"]["stem.0.weight"].shape  # the body was loaded ...
    assert b["model"]["head.weight"].shape == (3, a["head.weight"].shape[1])  # ... and the head replaced


def test_compile_steps_the_compiled_model_and_saves_the_plain_one(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch
) -> None:
    compiled = []

    def fake_compile(model):  # torch.compile's contract: a callable module sharing the parameters
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    r = train(_cfg(tiny_fmnist, tmp_path, epochs=1, compile=True))
    assert len(compiled) == 1
    assert not any(k.startswith("_orig_mod") for k in load_file(r.run_dir / "last.safetensors"))


def test_grad_clip_and_accumulation(tiny_fmnist: Path, tmp_path: Path) -> None:
    r = train(_cfg(tiny_fmnist, tmp_path, epochs=1, grad_clip=0.5, accum_steps=2))
    assert r.steps == 2  # 4 batches of 32 (144 images after validation) -> 2 optimizer steps of 2 batches
    with pytest.raises(ConfigError, match=r"gives 4 batches of 32, fewer than accum_steps=9"):
        train(_cfg(tiny_fmnist, tmp_path / "x", epochs=1, accum_steps=9))


def test_the_specs_post_step_runs_after_every_optimizer_step(tiny_fmnist: Path, tmp_path: Path) -> None:
    """The trainer calls the model's declared hook (ZFNet's renormalisation is one) after each step, on the
    stepped weights: here a hook that records the step's weights and zeroes one conv bias."""
    seen: list[float] = []

    def hook(model: torch.nn.Module) -> None:
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None)
        seen.append(float(conv.bias.detach().abs().sum()))
        with torch.no_grad():
            conv.bias.zero_()

    spec = dataclasses.replace(get_model_spec("lenet5_modern"), name="test_post_step_lenet", post_step=hook)
    register_model(spec)
    try:
        r = train(_cfg(tiny_fmnist, tmp_path, model=spec.name, epochs=1, accum_steps=2, ema_decay=None))
    finally:
        unregister_model(spec.name)
    assert r.steps == 2 and len(seen) == 2  # 5 batches, a step every 2: the hook runs per step, not per batch
    assert seen[1] > 0  # the second step moved the bias the first hook had zeroed
    weights = load_file(r.run_dir / "last.safetensors")
    assert any(k.endswith("bias") and v.ndim == 1 and not v.any() for k, v in weights.items())


def test_filter_rms_limit_caps_every_conv_filter(tiny_fmnist: Path, tmp_path: Path) -> None:
    r = train(_cfg(tiny_fmnist, tmp_path, epochs=1, lr=0.5, filter_rms_limit=0.05, ema_decay=None))
    weights = load_file(r.run_dir / "last.safetensors")
    convs = [v for k, v in weights.items() if v.ndim == 4]
    assert convs and all(w.float().pow(2).mean((1, 2, 3)).sqrt().max() <= 0.05 + 1e-6 for w in convs)


def test_a_run_refuses_a_changed_model_definition_and_says_how_to_rebuild_it(
    tiny_fmnist: Path, tmp_path: Path
) -> None:
    # A run trained with quicknet_s's former full-resolution stem, whose model.json then lost the kwargs:
    # what a run saved before quicknet_s got its stride-2 stem looks like. Every weight shape is the same.
    r = train(_cfg(tiny_fmnist, tmp_path, epochs=1, max_steps=2, model_kwargs={"stem_stride": 1}))
    path = r.run_dir / "model.json"
    info = json.loads(path.read_text())
    assert info["model_config"]["stem_stride"] == 1 and info["model_config"]["widths"] == [32, 64, 128]
    x = torch.randn(2, 1, 28, 28)
    expected = load_run(r.run_dir, which="last").model(x)
    path.write_text(json.dumps(info | {"model_kwargs": {}}))
    with pytest.raises(CheckpointError, match=r"stem_stride: 1 saved, 2 now.*\{\"stem_stride\": 1\}"):
        load_run(r.run_dir, which="last")
    config = r.run_dir / "config.yaml"  # resuming rebuilds from the saved config: drop the kwargs there too
    saved = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump(saved | {"model_kwargs": {}}))
    with pytest.raises(CheckpointError, match="another definition of quicknet_s"):
        train(_cfg(tiny_fmnist, tmp_path, resume=str(r.run_dir), epochs=2))
    path.write_text(json.dumps(info | {"model_kwargs": {"stem_stride": 1}}))  # the fix the message names
    assert torch.equal(load_run(r.run_dir, which="last").model(x), expected)
