"""Every experiment end to end at the ``tiny`` scale (a few steps a run): report, JSON fields and plots; and
at the ``quick`` scale (``imgcls experiment run NAME --quick``, behind the slow marker, on the real
Fashion-MNIST), where every run must also have trained.

The numbers of the tiny scale mean nothing; what is tested here is that each experiment trains what it
declares, computes its comparisons and writes a complete report. The computed figures (receptive fields,
parameters, multiply-adds) do not depend on training and are checked against the papers. Whether a claim
holds at the quick scale is what the experiment reports, not what a test may require.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imgcls.experiments import RESULT_FIELDS, get_experiment, list_experiments, run_experiment
from imgcls.experiments.runner import Scale

SLOW = {"degradation"}  # 56-layer networks: behind the slow marker


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in list_experiments()]
)
def test_tiny_run_writes_report_json_and_plots(name: str, tmp_path: Path, cache: Path) -> None:
    report = run_experiment(name, "tiny", tmp_path / name, cache)
    results = json.loads((tmp_path / name / "results.json").read_text())
    assert set(RESULT_FIELDS) <= set(results)
    exp = get_experiment(name)
    assert results["experiment"] == name and results["claim"] == exp.claim and results["scale"] == "tiny"
    assert len(results["runs"]) == len(exp.runs("tiny"))
    assert results["comparisons"] and results["held"] == all(c["held"] for c in results["comparisons"])
    assert report.held == results["held"] and report.verdict == results["verdict"]
    assert results["plots"]
    for plot in results["plots"]:
        png = tmp_path / name / plot
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    md = (tmp_path / name / "report.md").read_text()
    assert exp.claim in md and "| quantity | expected | paper | ours | same direction? |" in md
    assert all(f"]({plot})" in md for plot in results["plots"])


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")  # Debian's package


@pytest.mark.slow
@pytest.mark.parametrize("name", list_experiments())
def test_quick_run_trains_every_run_and_writes_its_report(name: str, tmp_path: Path, cache: Path) -> None:
    if not FASHION_MNIST.is_file():
        message = "Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist (setup.sh does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    report = run_experiment(name, "quick", tmp_path / name, cache)
    results = json.loads((tmp_path / name / "results.json").read_text())
    assert set(RESULT_FIELDS) <= set(results) and results["scale"] == "quick"
    assert len(results["runs"]) == len(get_experiment(name).runs("quick"))
    # no run stayed within 1.5x of chance (the runner's warning): every comparison carries information
    assert "WARNING" not in report.verdict, report.verdict
    assert results["plots"] and all((tmp_path / name / p).stat().st_size > 10_000 for p in results["plots"])


def test_receptive_fields_and_weights_match_vgg_section_2_3() -> None:
    from imgcls.experiments.receptive_field import block_figures

    three = block_figures(3, 3, channels=8, side=16)
    seven = block_figures(7, 1, channels=8, side=16)
    assert three["field_computed"] == three["field_measured"] == 7 == seven["field_measured"]
    assert (three["params_per_c2"], seven["params_per_c2"]) == (27, 49)  # "27 C^2 vs 49 C^2"
    assert block_figures(3, 2, channels=8, side=16)["field_measured"] == 5


def test_inception_3a_costs_what_table_1_says() -> None:
    from imgcls.experiments.bottleneck import module_figures

    reduced, naive = module_figures(True), module_figures(False)
    assert round(reduced["macs"] / 1e6) == 128  # Table 1: 128M operations
    assert reduced["out_chs"] == 256 and naive["out_chs"] == 64 + 128 + 32 + 192
    assert naive["macs"] > 2 * reduced["macs"]


def test_lrn_dropout_keeps_the_papers_sgd_and_clips_the_gradient_spike() -> None:
    # Unclipped, a spike of the gradient norm at the end of the warm-up kills most ReLUs of the forms without
    # LRN (lrn_dropout's module docstring): every scale clips, with the paper's lr, momentum and weight decay.
    from imgcls.experiments.lrn_dropout import FORMS, GRAD_CLIP
    from imgcls.train import TrainConfig

    exp = get_experiment("lrn-dropout")
    for scale in ("tiny", "quick", "full"):
        runs = exp.runs(scale)
        assert len(runs) == len(FORMS) * len(exp.seeds[scale])
        for run in runs:
            p = run.params
            assert p["grad_clip"] == GRAD_CLIP == 5.0
            assert (p["optimizer"], p["lr"], p.get("momentum", TrainConfig().momentum)) == ("sgd", 0.01, 0.9)
            assert p["weight_decay"] == 5e-4
    quick = exp.runs("quick")[0].params
    assert (quick["batch_size"], quick["epochs"], quick["image_size"]) == (64, 2, 16)
    assert len(exp.seeds["full"]) == 3 and exp.runs("full")[0].params["image_size"] == 16


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_compound_scaling_points_grow_as_the_rule_says(scale: Scale) -> None:
    from imgcls.experiments.compound_scaling import PHIS, _figures, _rule_growth, points, runs

    pts = points(scale)
    figures = {label: _figures(w, d, r, 1) for label, (w, d, r) in pts.items()}
    base_macs, base_side = figures["base"]
    assert base_side == 2  # the small-image form (total stride 8), not a 1x1 map after stride 32
    assert pts["base"][2] <= 14 and max(r for _, _, r in pts.values()) <= 28  # within Fashion-MNIST's 28 px
    for phi in PHIS[scale]:
        for method in ("compound", "width", "depth", "resolution"):
            growth = figures[f"{method} phi={phi}"][0] / base_macs
            assert 0.8 < growth / _rule_growth(phi) < 1.2, (method, phi, growth)
    assert all(r.params["amp"] == "off" for r in runs(scale))  # fp32 on every CPU


def test_compound_scaling_notes_when_every_scaled_network_is_below_the_base() -> None:
    from imgcls.experiments.compound_scaling import _below_base

    test = {"base": 0.80, "width phi=1": 0.78, "depth phi=1": 0.75}
    assert "too short" in _below_base(test, {"base": 0.85, "width phi=1": 0.82, "depth phi=1": 0.80})[0]
    assert "does not pay" in _below_base(test, {"base": 0.85, "width phi=1": 0.90, "depth phi=1": 0.80})[0]
    assert _below_base(test | {"depth phi=1": 0.81}, {}) == []  # one scaled network beat the base: no note
