"""Hardware dispatch: bf16 autocast and the k-NN's kernels are chosen by capability and measurement."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from imgcls.classic import KNeighborsClassifier, knn
from imgcls.utils import device, hardware

ZEN3 = hardware.CpuInfo("AMD EPYC 7B13", "AVX2", frozenset({"avx2", "fma", "sse4_2"}), 2, "x86_64")
ZEN4 = hardware.CpuInfo(
    "AMD EPYC 9B14", "AVX512", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}), 2, "x86_64"
)
# The real int8 product, for the test that counts its calls.
REAL_INT_MM = torch._int_mm


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Pretend to be another CPU, with an empty wisdom cache; returns the list of micro-benchmark calls."""
    calls: list[str] = []
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path))
    hardware.fast_bf16.cache_clear()

    def pretend(info: hardware.CpuInfo, speedup: float = 2.2) -> list[str]:
        monkeypatch.setattr(hardware, "cpu_info", lambda: info)
        names = {torch.bfloat16: "bf16", torch.int8: "int8"}
        monkeypatch.setattr(hardware, "_measure_speedup", lambda dtype: calls.append(names[dtype]) or speedup)
        hardware.fast_bf16.cache_clear()
        hardware.fast_int8.cache_clear()
        return calls

    yield pretend
    hardware.fast_bf16.cache_clear()
    hardware.fast_int8.cache_clear()


def test_avx2_gets_no_bf16_autocast_and_measures_nothing(machine) -> None:
    calls = machine(ZEN3)
    assert hardware.cpu_class() == "AVX2"
    assert device.resolve_amp("auto", torch.device("cpu")) is None
    assert calls == []  # the flags were enough: no micro-benchmark


def test_bf16_cpu_gets_autocast_when_it_measures_faster_and_remembers(machine, tmp_path) -> None:
    calls = machine(ZEN4, speedup=2.2)
    assert hardware.cpu_class() == "AVX512_BF16"
    assert device.resolve_amp("auto", torch.device("cpu")) == torch.bfloat16
    assert calls == ["bf16"]
    wisdom = json.loads((tmp_path / "wisdom.json").read_text())
    assert [v["bf16_speedup"] for v in wisdom.values()] == [2.2]
    hardware.fast_bf16.cache_clear()  # a new process: the cached verdict, no second measurement
    assert hardware.fast_bf16() and calls == ["bf16"]


def test_bf16_flags_without_a_measured_gain_stay_fp32(machine) -> None:
    machine(ZEN4, speedup=1.05)
    assert device.resolve_amp("auto", torch.device("cpu")) is None
    assert device.resolve_amp("bf16", torch.device("cpu")) == torch.bfloat16  # asked for: given


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"KEY": 5}', '{"KEY": {"bf16_speedup": "fast"}}'])
def test_a_damaged_wisdom_file_is_measured_again(machine, tmp_path, text: str) -> None:
    calls = machine(ZEN4)
    (tmp_path / "wisdom.json").write_text(text.replace("KEY", hardware._machine_key(ZEN4)))
    assert hardware.fast_bf16() and calls == ["bf16"]


def test_cpu_classes() -> None:
    assert hardware.cpu_class(ZEN3) == "AVX2" and hardware.cpu_class(ZEN4) == "AVX512_BF16"
    amx = hardware.CpuInfo("Xeon", "AVX512", frozenset({"avx512f", "amx_bf16", "avx512_bf16"}), 2, "x86_64")
    arm = hardware.CpuInfo("Neoverse", "DEFAULT", frozenset({"asimd", "bf16"}), 2, "aarch64")
    assert hardware.cpu_class(amx) == "AMX" and hardware.cpu_class(arm) == "NEON"
    assert hardware.cpu_class(hardware.cpu_info()) in (
        "AMX",
        "AVX512_BF16",
        "AVX512",
        "AVX2",
        "NEON",
        "DEFAULT",
    )


def test_avx2_gets_no_int8_products_and_measures_nothing(machine) -> None:
    calls = machine(ZEN3)
    assert not hardware.fast_int8() and calls == []


@pytest.mark.parametrize("speedup, int8", [(3.5, True), (1.1, False)])
def test_vnni_gets_int8_products_where_they_measure_faster(machine, speedup: float, int8: bool) -> None:
    calls = machine(ZEN4, speedup=speedup)
    assert hardware.fast_int8() is int8 and calls == ["int8"]


@pytest.mark.parametrize("fast", [False, True], ids=["float32-products", "int8-products"])
@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_knn_pixel_path_takes_the_product_the_dispatch_chose(
    fast: bool, metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # int8 products ran 45x slower than float32 without VNNI: used only where fast_int8() says so; the float32
    # products on the same codes are exact, so both give the same neighbours and distances
    used = {"int8": 0}

    def int_mm(*args, **kwargs):
        used["int8"] += 1
        return REAL_INT_MM(*args, **kwargs)

    monkeypatch.setattr(torch, "_int_mm", int_mm)
    monkeypatch.setattr(knn, "fast_int8", lambda: fast)
    rng = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3000, 40), generator=rng, dtype=torch.uint8)
    q = torch.randint(0, 256, (50, 40), generator=rng, dtype=torch.uint8)
    clf = KNeighborsClassifier(k=5, metric=metric).fit(x, torch.arange(3000) % 3)
    dist, idx = clf.kneighbors(q)
    assert clf.stats.kind == f"{'int8' if fast else 'pixels'}-{metric}"
    assert (used["int8"] > 0) is fast
    d = torch.cdist(q.double(), x.double(), p=2 if metric == "l2" else 1)
    ref = torch.sort(d, dim=1, stable=True)
    assert torch.equal(idx, ref.indices[:, :5]) and torch.equal(dist, ref.values[:, :5])


def test_bf16_step_speedup_times_both_forms_interleaved_and_caches(machine, tmp_path) -> None:
    machine(ZEN4)
    calls: list[bool] = []

    def step(bf16: bool) -> None:
        calls.append(bf16)
        if not bf16:  # an fp32 step twice as slow as a bf16 one
            time.sleep(0.002)
        time.sleep(0.002)

    speedup = hardware.bf16_step_speedup("net|(8, 1, 16, 16)", step)
    assert 1.5 < speedup < 2.5
    assert calls == [False, True] + [False, True] * 5  # warm-up each, then 5 interleaved pairs
    wisdom = json.loads((tmp_path / "wisdom.json").read_text())
    assert [v["bf16_step|net|(8, 1, 16, 16)"] for v in wisdom.values()] == [speedup]
    calls.clear()
    assert hardware.bf16_step_speedup("net|(8, 1, 16, 16)", step) == speedup and calls == []  # cached
    hardware.bf16_step_speedup("other|(8, 1, 16, 16)", step)
    assert calls  # another step is measured anew


def _tiny_run(out: Path, **kw):
    """A few steps of a small network on 8x8 digits, with ``--amp auto``."""
    from imgcls.train import TrainConfig

    base = dict(
        model="lenet5_modern",
        dataset="digits",
        epochs=1,
        batch_size=16,
        out_dir=str(out),
        progress=False,
        fallback_dataset=None,
        val_fraction=0.0,
    )
    return TrainConfig(**(base | kw))


@pytest.mark.parametrize(("step_speedup", "expected"), [(0.45, None), (1.4, torch.bfloat16)])
def test_amp_auto_keeps_bf16_only_where_the_models_step_is_faster(
    machine, tmp_path, monkeypatch, step_speedup: float, expected
) -> None:
    from imgcls.train import train
    from imgcls.train import trainer as trainer_mod

    machine(ZEN4)  # bf16 products measured fast
    keys: list[str] = []
    monkeypatch.setattr(trainer_mod, "bf16_step_speedup", lambda key, step: keys.append(key) or step_speedup)
    used: list[torch.dtype | None] = []
    real_autocast = trainer_mod.autocast
    monkeypatch.setattr(
        trainer_mod, "autocast", lambda dev, dtype: used.append(dtype) or real_autocast(dev, dtype)
    )
    train(_tiny_run(tmp_path, max_steps=2, tta_flip=False))
    assert len(keys) == 1 and keys[0].startswith("lenet5_modern|") and "(16, 1, 8, 8)" in keys[0]
    assert used and set(used) == {expected}


def test_amp_auto_on_avx2_measures_no_step(machine, tmp_path, monkeypatch) -> None:
    from imgcls.train import train
    from imgcls.train import trainer as trainer_mod

    calls = machine(ZEN3)
    monkeypatch.setattr(trainer_mod, "bf16_step_speedup", lambda key, step: pytest.fail("measured on AVX2"))
    train(_tiny_run(tmp_path, max_steps=1))
    assert calls == []


def test_the_step_measurement_leaves_the_runs_random_stream_alone(machine, tmp_path, monkeypatch) -> None:
    from safetensors.torch import load_file

    from imgcls.train import train
    from imgcls.train import trainer as trainer_mod

    machine(ZEN4)
    check = trainer_mod._Trainer._tune_cpu_step
    states: list[bool] = []

    def checked(self) -> None:
        before = torch.random.get_rng_state()
        check(self)
        states.append(torch.equal(before, torch.random.get_rng_state()))

    monkeypatch.setattr(trainer_mod._Trainer, "_tune_cpu_step", checked)
    measured = train(
        _tiny_run(tmp_path / "a", max_steps=3, deterministic=True, augment="light")
    )  # measures the step, then trains
    wisdom = json.loads((tmp_path / "wisdom.json").read_text())
    assert any(k.startswith("bf16_step|lenet5_modern|") for v in wisdom.values() for k in v)
    cached = train(
        _tiny_run(tmp_path / "b", max_steps=3, deterministic=True, augment="light")
    )  # the verdict from the cache
    assert states == [True, True]
    a, b = (load_file(r.run_dir / "last.safetensors") for r in (measured, cached))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("step_speedup", "threads_in_run"), [(1.6, 1), (0.8, 2)])
def test_threads_left_to_imgcls_follow_the_measured_step(
    machine, tmp_path, monkeypatch, step_speedup: float, threads_in_run: int
) -> None:
    """No --threads: one thread where a training step of the model runs measurably faster on one than on all
    (small batches), all of them otherwise; the process's thread count is given back when the run ends."""
    from imgcls.train import train
    from imgcls.train import trainer as trainer_mod

    machine(ZEN3)
    keys: list[str] = []
    monkeypatch.setattr(
        trainer_mod, "one_thread_step_speedup", lambda key, step: keys.append(key) or step_speedup
    )
    seen: list[int] = []
    real_autocast = trainer_mod.autocast
    monkeypatch.setattr(
        trainer_mod,
        "autocast",
        lambda dev, dtype: seen.append(torch.get_num_threads()) or real_autocast(dev, dtype),
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train(_tiny_run(tmp_path, max_steps=2, tta_flip=False))
        after = torch.get_num_threads()
        keys_then, seen_then = list(keys), list(seen)
        train(_tiny_run(tmp_path / "explicit", max_steps=1, tta_flip=False, threads=2))  # the user's choice
    finally:
        torch.set_num_threads(before)
    assert (
        len(keys_then) == 1 and keys_then[0].startswith("lenet5_modern|") and keys_then[0].endswith("|None")
    )
    assert keys == keys_then  # an explicit --threads measures nothing
    assert seen_then and set(seen_then) == {threads_in_run}  # every step and evaluation of the run
    assert after == 2


def test_one_thread_step_speedup_calls_the_step_both_ways_and_caches(machine, tmp_path) -> None:
    machine(ZEN3)
    calls: list[bool] = []

    def step(one: bool) -> None:
        calls.append(one)
        time.sleep(0.001 if one else 0.003)  # the one-thread step three times as fast

    speedup = hardware.one_thread_step_speedup("net|(32, 1, 28, 28)|None", step)
    assert 2.0 < speedup < 4.0 and calls == [False, True] + [False, True] * 5
    wisdom = json.loads((tmp_path / "wisdom.json").read_text())
    assert [v["one_thread_step|net|(32, 1, 28, 28)|None"] for v in wisdom.values()] == [speedup]


@pytest.mark.parametrize(("forward_speedup", "expected"), [(0.6, None), (1.5, torch.bfloat16)])
def test_inference_keeps_bf16_only_where_the_models_forward_is_faster(
    machine, monkeypatch, forward_speedup: float, expected
) -> None:
    """Evaluation and prediction: bf16 autocast on a CPU with fast bf16 products only where this model's forward
    pass measures faster in it; the model is left as it was (train mode, no gradients)."""
    from imgcls import create_model

    machine(ZEN4)
    model = create_model("lenet5_modern", num_classes=10, in_chans=1).train()
    timed: list[tuple[str, bool, bool]] = []

    def speedup(key: str, forward) -> float:
        for bf16 in (False, True):
            forward(bf16)
            timed.append((key, bf16, model.training))
        return forward_speedup

    monkeypatch.setattr(device, "bf16_forward_speedup", speedup)
    assert device.inference_amp(model, torch.device("cpu"), (500, 1, 28, 28)) == expected
    size = sum(p.numel() for p in model.parameters())
    assert [k for k, _, _ in timed] == [f"{type(model).__name__}|{size} parameters|(128, 1, 28, 28)"] * 2
    assert not any(training for _, _, training in timed) and model.training  # timed in eval mode, restored
    assert all(p.grad is None for p in model.parameters())


def test_inference_on_avx2_measures_nothing(machine, monkeypatch) -> None:
    from imgcls import create_model

    calls = machine(ZEN3)
    monkeypatch.setattr(device, "bf16_forward_speedup", lambda key, forward: pytest.fail("measured on AVX2"))
    model = create_model("lenet5_modern", num_classes=10, in_chans=1)
    assert device.inference_amp(model, torch.device("cpu"), (8, 1, 28, 28)) is None and calls == []
