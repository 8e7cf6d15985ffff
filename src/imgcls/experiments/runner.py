"""The shared machinery of the experiments: declare runs, train them once (cached, resumable), report.

An experiment (one module of this package) declares the claim it tests, the paper and figure it comes from,
the runs it needs at each scale (:class:`Run`: a :class:`~imgcls.train.TrainConfig` or a baseline), and an
``analyze`` function that turns the finished runs into comparisons (:class:`Comparison`: what the paper
says, what we measured, whether the direction holds), tables and figures. :func:`run_experiment` does the
rest:

- each run is trained in a cache directory under a name made of its label and a hash of everything it
  depends on (its settings, the experiment's own network, the runs it reads); a run whose record
  (:data:`RECORD`) exists is reused, and one that was interrupted (it has a training state but no result) resumes;
- ``results.json`` (the fields in :data:`RESULT_FIELDS`), ``report.md`` (the table paper | ours | same
  direction?) and PNG plots are written to the output directory.

Scales: ``tiny`` (the tests: seconds a run, scikit-learn's 8x8 digits), ``quick`` (a subset of Fashion-MNIST,
about two minutes an experiment on two cores), ``full`` (more data, more epochs and, where a difference is
within seed noise, three seeds).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from imgcls.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import nn

__all__ = [
    "EXPERIMENTS",
    "RESULT_FIELDS",
    "SCALES",
    "SCALE_DATA",
    "Comparison",
    "Experiment",
    "ExperimentReport",
    "Outcome",
    "Run",
    "get_experiment",
    "list_experiments",
    "run_experiment",
]

log = logging.getLogger(__name__)

# Module names of the experiments, in the order `imgcls experiment list` shows them (the order).
EXPERIMENTS: dict[str, str] = {
    "degradation": "degradation",
    "receptive-field": "receptive_field",
    "bottleneck": "bottleneck",
    "width-vs-depth": "width_vs_depth",
    "compound-scaling": "compound_scaling",
    "vit-vs-cnn-data": "vit_vs_cnn_data",
    "pixels-vs-features": "pixels_vs_features",
    "aux-classifiers": "aux_classifiers",
    "lrn-dropout": "lrn_dropout",
}

SCALES = ("tiny", "quick", "full")
Scale = Literal["tiny", "quick", "full"]

# The fields every results.json holds (tests check them).
RESULT_FIELDS = (
    "experiment",
    "title",
    "claim",
    "source",
    "scale",
    "seeds",
    "held",
    "verdict",
    "comparisons",
    "runs",
    "measures",
    "plots",
    "seconds",
    "machine",
)

# What the runner keeps of a finished run, in the run's directory (the trainer's own result.json is beside it).
RECORD = "experiment_record.json"

# Settings that change how a run is shown, never what it computes: left out of the cache key.
_NOT_IN_KEY = {"progress", "log_every", "out_dir", "name", "resume", "threads", "device"}


@dataclass(frozen=True)
class Run:
    """One run an experiment needs.

    ``kind`` "train": ``params`` are :class:`~imgcls.train.TrainConfig` fields. ``model`` builds a network
    that is not in the zoo (``model(num_classes=, in_chans=) -> nn.Module``); it is registered under
    ``params["model"]`` while the run trains, and ``model_id`` (e.g. the repr of its config) enters the cache
    key. ``kind`` "baseline": ``params`` are :func:`imgcls.classic.baseline.run_baseline` arguments;
    ``features_of`` names a train run of the same experiment whose network gives the features.
    """

    label: str
    params: Mapping[str, Any]
    kind: Literal["train", "baseline"] = "train"
    model: Callable[..., nn.Module] | None = None
    model_id: str = ""
    features_of: str | None = None


@dataclass
class Comparison:
    """One claim checked: ``ours`` is the measured effect, and the claim's direction holds when ``held``."""

    quantity: str  # what is compared, e.g. "training error, plain-56 minus plain-20 (points)"
    expected: str  # the paper's direction, e.g. "> 0 (deeper plain trains worse)"
    paper: str  # the paper's figure where it gives one, else what its figure shows
    ours: str  # our number(s), with spread where there are seeds
    held: bool
    within_noise: bool = False  # the effect is smaller than the spread of the seeds


@dataclass
class Outcome:
    """What an experiment's ``analyze`` returns."""

    comparisons: list[Comparison]
    table: list[dict[str, Any]] = field(default_factory=list)  # one row per model / setting
    figures: dict[str, Figure] = field(default_factory=dict)  # file stem -> figure
    measures: dict[str, Any] = field(default_factory=dict)  # further numbers for results.json
    notes: list[str] = field(default_factory=list)  # departures from the paper, caveats


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    claim: str  # one sentence
    source: str  # paper, year, figure / section
    runs: Callable[[Scale], list[Run]]
    analyze: Callable[[dict[str, dict[str, Any]], Scale], Outcome]
    seeds: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: {s: (0,) for s in SCALES})
    description: str = ""  # the setting, for report.md


@dataclass
class ExperimentReport:
    experiment: str
    held: bool
    verdict: str
    comparisons: list[Comparison]
    out_dir: Path
    results: dict[str, Any]
    files: list[Path]

    def lines(self) -> list[str]:
        """The verdict and each comparison, one line each (what ``imgcls experiment run`` prints)."""
        out = [self.verdict]
        for c in self.comparisons:
            mark = "held" if c.held else "NOT held"
            noise = " (within seed noise)" if c.within_noise else ""
            out.append(
                f"  {mark}{noise}: {c.quantity}: ours {c.ours}; expected {c.expected}; paper {c.paper}"
            )
        out.append(f"  report: {self.out_dir / 'report.md'}")
        return out


# ----------------------------------------------------------------------------------------------- registry
def list_experiments() -> list[str]:
    return list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    """The experiment ``name``; an unknown name lists every valid one."""
    if name not in EXPERIMENTS:
        raise UnknownNameError(
            f"unknown experiment '{name}': valid: {', '.join(EXPERIMENTS)} (imgcls experiment list)"
        )
    module = importlib.import_module(f"imgcls.experiments.{EXPERIMENTS[name]}")
    return module.EXPERIMENT


# ------------------------------------------------------------------------------------------- run caching
def run_key(run: Run, needed: Mapping[str, str] | None = None) -> str:
    """A hash of everything ``run``'s result depends on: its kind, settings, own network, and the runs it reads."""
    params = {k: v for k, v in sorted(run.params.items()) if k not in _NOT_IN_KEY}
    blob = json.dumps(
        {"kind": run.kind, "params": params, "model": run.model_id, "needs": dict(needed or {})},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "run"


@contextlib.contextmanager
def _registered(run: Run) -> Iterator[None]:
    """While inside, the experiment's own network is a registered model (the trainer builds from the registry)."""
    if run.model is None:
        yield
        return
    from imgcls.models.registry import ModelSpec, get_model_spec, register_model, unregister_model

    name = str(run.params["model"])
    with contextlib.suppress(UnknownNameError):
        get_model_spec(name)
        raise ConfigError(f"experiment model '{name}' clashes with a model of the zoo: rename it")
    builder = run.model
    register_model(
        ModelSpec(name=name, family="experiment", builder=lambda **kw: builder(**kw), input_size=(1, 28, 28))
    )
    try:
        yield
    finally:
        unregister_model(name)


def _count_params(run: Run, num_classes: int, in_chans: int, image_size: int) -> int:
    import torch

    from imgcls.models import count_params, create_model

    with torch.device("meta"):
        model = create_model(
            str(run.params["model"]),
            num_classes=num_classes,
            in_chans=in_chans,
            image_size=image_size,
            **dict(run.params.get("model_kwargs", {})),
        )
    return count_params(model)


def _train(run: Run, run_dir: Path, progress: bool) -> dict[str, Any]:
    from imgcls.train import TrainConfig, train
    from imgcls.train.checkpoint import STATE, read_model_info

    shown = {"progress": progress, "log_every": 0 if not progress else 50}
    if (run_dir / STATE).is_file():
        log.info("%s: resuming the interrupted run in %s", run.label, run_dir)
        cfg = TrainConfig(resume=str(run_dir), **shown)
    else:
        cfg = TrainConfig(**dict(run.params), out_dir=str(run_dir.parent), name=run_dir.name, **shown)
    with _registered(run):
        result = train(cfg)
        info = read_model_info(result.run_dir)
        params = _count_params(run, info["num_classes"], info["in_chans"], info["image_size"])
    train_rows = [r for r in result.history if "train_acc" in r]
    return {
        "kind": "train",
        "model": run.params.get("model"),
        "test_acc": result.test_acc,
        "val_acc": result.val_acc,
        "final_train_error": 1.0 - train_rows[-1]["train_acc"] if train_rows else None,
        "params": params,
        "num_classes": info["num_classes"],
        "epochs": result.epochs,
        "train_seconds": result.train_seconds,
        "total_seconds": result.total_seconds,
        "history": result.history,
        "run_dir": str(result.run_dir),
    }


def _baseline(
    run: Run, run_dir: Path, records: Mapping[str, dict[str, Any]], progress: bool
) -> dict[str, Any]:
    from imgcls.classic.baseline import run_baseline

    kwargs = dict(run.params)
    if run.features_of is not None:
        kwargs["features"] = records[run.features_of]["run_dir"]
    result = run_baseline(out_dir=str(run_dir), progress=progress, **kwargs)
    return {
        "kind": "baseline",
        "method": result.method,
        "test_acc": result.top1,
        "num_features": result.num_features,
        "n_train": result.n_train,
        "n_test": result.n_test,
        "total_seconds": result.total_seconds,
    }


def execute_runs(
    runs: Sequence[Run], cache_dir: Path, *, progress: bool = False
) -> dict[str, dict[str, Any]]:
    """Each run's record (label -> dict), from the cache where it finished before, else trained now."""
    from imgcls.utils.files import atomic_write_text, dumps_json

    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"an experiment's run labels must be unique, got {labels}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    keys: dict[str, str] = {}
    records: dict[str, dict[str, Any]] = {}
    for i, run in enumerate(runs):
        if run.features_of is not None and run.features_of not in keys:
            raise ConfigError(f"run '{run.label}' reads run '{run.features_of}', which must come before it")
        needed = {run.features_of: keys[run.features_of]} if run.features_of else {}
        keys[run.label] = key = run_key(run, needed)
        run_dir = cache_dir / f"{_slug(run.label)}-{key}"
        done = run_dir / RECORD
        if done.is_file():
            record = json.loads(done.read_text())
            record["cached"] = True
            log.info("[%d/%d] %s: finished before, reused from %s", i + 1, len(runs), run.label, run_dir)
        else:
            log.info("[%d/%d] %s: running (%s)", i + 1, len(runs), run.label, run_dir)
            if run.kind == "train":
                record = _train(run, run_dir, progress)
            else:
                run_dir.mkdir(parents=True, exist_ok=True)
                record = _baseline(run, run_dir, records, progress)
            record["key"] = key
            atomic_write_text(done, dumps_json(record))
            record["cached"] = False
        records[run.label] = record
    return records


# -------------------------------------------------------------------------------------------- statistics
def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, sd


def fmt_pct(values: Sequence[float]) -> str:
    """``[0.91, 0.93]`` -> ``"92.00 ± 1.41%"`` (one value: ``"91.00%"``); fractions in, percent out."""
    mean, sd = mean_sd([100 * v for v in values])
    return f"{mean:.2f}%" if len(values) == 1 else f"{mean:.2f} ± {sd:.2f}% ({len(values)} seeds)"


def compare_means(
    quantity: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    expect_a_greater: bool,
    expected: str,
    paper: str,
) -> Comparison:
    """``mean(a) - mean(b)`` in points against the claim ``a > b`` (or ``a < b``), with the seeds' spread."""
    diff = 100 * (mean_sd(a)[0] - mean_sd(b)[0])
    spread = 100 * max(mean_sd(a)[1], mean_sd(b)[1])
    held = diff > 0 if expect_a_greater else diff < 0
    ours = f"{diff:+.2f} points ({fmt_pct(a)} vs {fmt_pct(b)})"
    return Comparison(quantity, expected, paper, ours, held, within_noise=len(a) > 1 and abs(diff) < spread)


def untrained(records: Mapping[str, dict[str, Any]]) -> list[str]:
    """Labels of the training runs whose test accuracy ended within 1.5x of chance (1 / classes)."""
    return [
        label
        for label, r in records.items()
        if r.get("kind") == "train" and r.get("num_classes") and r["test_acc"] < 1.5 / r["num_classes"]
    ]


def seeded(label: str, seed: int) -> str:
    return f"{label}/seed{seed}"


def per_seed(records: Mapping[str, dict[str, Any]], label: str, key: str) -> list[float]:
    """``key`` of every seed's run of ``label`` (labels made with :func:`seeded`)."""
    return [r[key] for name, r in records.items() if name.split("/seed")[0] == label]


# --------------------------------------------------------------------------------------------- reporting
def _machine() -> dict[str, Any]:
    import torch

    from imgcls.utils.hardware import cpu_class, cpu_info

    cpu = cpu_info()
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None  # other work on the machine
    return {
        "cpu": cpu.model,
        "cpu_class": cpu_class(cpu),
        "cores": cpu.cores,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": load,
    }


def _markdown(exp: Experiment, results: dict[str, Any], outcome: Outcome, command: str) -> str:
    out = [f"# {exp.title}", "", f"**Claim.** {exp.claim}", "", f"**Source.** {exp.source}", ""]
    if exp.description:
        out += [f"**Setting.** {exp.description}", ""]
    out += [f"**Verdict.** {results['verdict']}", ""]
    out += ["| quantity | expected | paper | ours | same direction? |", "|---|---|---|---|---|"]
    for c in outcome.comparisons:
        same = "yes" if c.held else "**no**"
        same += " (within seed noise)" if c.within_noise else ""
        out.append(f"| {c.quantity} | {c.expected} | {c.paper} | {c.ours} | {same} |")
    if outcome.table:
        cols = list(outcome.table[0])
        out += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        out += ["| " + " | ".join(_cell(row.get(c)) for c in cols) + " |" for row in outcome.table]
    for stem in results["plots"]:
        out += ["", f"![{stem}]({stem})"]
    if outcome.notes:
        out += ["", "**Notes.**", ""] + [f"- {n}" for n in outcome.notes]
    m = results["machine"]
    out += [
        "",
        f"Scale `{results['scale']}`, seeds {', '.join(map(str, results['seeds']))}; {results['seconds']:.0f} s "
        f"on {m['cpu']} ({m['cpu_class']}), {m['threads']} threads, torch {m['torch']}, load average "
        f"{m['load_average']}; runs reused from the "
        f"cache: {sum(r.get('cached', False) for r in results['runs'].values())} of {len(results['runs'])}.",
        "",
        f"Reproduce: `{command}`",
        "",
    ]
    return "\n".join(out)


def _cell(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _summary_record(record: dict[str, Any]) -> dict[str, Any]:
    """A run's record without its bulky per-epoch history (kept in the run's own directory)."""
    return {k: v for k, v in record.items() if k != "history"}


def run_experiment(
    name: str,
    scale: Scale = "quick",
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    *,
    progress: bool = False,
) -> ExperimentReport:
    """Run experiment ``name`` at ``scale``: train what it needs (reusing the cache), write its report.

    ``out_dir`` (default ``experiments/NAME-SCALE``) receives ``report.md``, ``results.json`` and the PNG plots;
    ``cache_dir`` (default ``experiments/cache``) holds every run, keyed by its settings, shared between
    experiments and scales.
    """
    from imgcls.utils.files import atomic_path, atomic_write_text, dumps_json

    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {', '.join(SCALES)}, got '{scale}'")
    exp = get_experiment(name)
    out = Path(out_dir) if out_dir is not None else Path("experiments") / f"{name}-{scale}"
    cache = Path(cache_dir) if cache_dir is not None else Path("experiments") / "cache"
    t0 = time.perf_counter()
    records = execute_runs(exp.runs(scale), cache, progress=progress)
    outcome = exp.analyze(records, scale)
    if scale == "tiny":
        outcome.notes.insert(
            0, "Scale tiny is a smoke test of a few optimizer steps: its accuracies mean nothing."
        )
    held = all(c.held for c in outcome.comparisons)
    failed = [c.quantity for c in outcome.comparisons if not c.held]
    verdict = (
        f"{name}: the claim's direction held ({len(outcome.comparisons)} of {len(outcome.comparisons)} checks)"
        if held
        else f"{name}: the claim's direction did NOT hold at this scale for: {'; '.join(failed)}"
    )
    if stuck := untrained(records):
        verdict += f" (WARNING: {len(stuck)} run(s) stayed near chance, their comparisons say nothing)"
        outcome.notes.insert(
            0,
            f"These runs ended within 1.5x of chance accuracy, so at this scale they did not train and every "
            f"comparison involving them is uninformative: {', '.join(stuck)}.",
        )
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for stem, fig in outcome.figures.items():
        path = out / f"{stem}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plots.append(path.name)
    results = {
        "experiment": name,
        "title": exp.title,
        "claim": exp.claim,
        "source": exp.source,
        "scale": scale,
        "seeds": list(exp.seeds[scale]),
        "held": held,
        "verdict": verdict,
        "comparisons": [c.__dict__ for c in outcome.comparisons],
        "runs": {label: _summary_record(r) for label, r in records.items()},
        "measures": outcome.measures,
        "table": outcome.table,
        "plots": plots,
        "notes": outcome.notes,
        "seconds": time.perf_counter() - t0,
        "machine": _machine(),
    }
    flag = {"quick": " --quick", "tiny": " --scale tiny", "full": ""}[scale]
    command = f"imgcls experiment run {name}{flag}"
    atomic_write_text(out / "results.json", dumps_json(results))
    atomic_write_text(out / "report.md", _markdown(exp, results, outcome, command))
    files = [out / "report.md", out / "results.json"] + [out / p for p in plots]
    return ExperimentReport(name, held, verdict, outcome.comparisons, out, results, files)


# ---------------------------------------------------------------------------------------------- recipes
# The data and schedule of each scale. No validation split (val_fraction 0): an experiment compares final
# weights on a stated share of the test split, and the held-out images would cost an evaluation an epoch.
SCALE_DATA: dict[str, dict[str, Any]] = {
    # A smoke test of the plumbing (the tests): a few steps on 8x8 digits; its numbers mean nothing.
    "tiny": {"dataset": "digits", "epochs": 1, "max_steps": 3, "batch_size": 32, "test_subset": 0.5},
    "quick": {"dataset": "fashion-mnist", "image_size": 16, "train_subset": 0.05, "test_subset": 0.2},
    # 6,000 training images at 28x28, every test image: sized (not yet measured) for 30 minutes on 2 cores.
    "full": {"dataset": "fashion-mnist", "train_subset": 0.1, "test_subset": 1.0},
}


def recipe(scale: Scale, model: str, *, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """TrainConfig fields of one run: SGD with momentum, half an epoch of warm-up then cosine, no label
    smoothing, no augmentation, no test-time flip (plain settings, as the papers' small-scale studies), the
    scale's data, then ``overrides``."""
    base: dict[str, Any] = {
        "model": model,
        "seed": seed,
        "val_fraction": 0.0,
        "optimizer": "sgd",
        "lr": 0.1,
        "batch_size": 128,
        "epochs": 4,
        "schedule": "cosine",
        # a short linear warm-up: He et al. 2015 warm up their deepest CIFAR net (sec. 4.2)
        "warmup_epochs": 0.5,
        "weight_decay": 5e-4,
        "label_smoothing": 0.0,
        "augment": "none",
        "tta_flip": False,
    }
    return base | SCALE_DATA[scale] | overrides


def train_error_curves(
    ax: Any, records: Mapping[str, dict[str, Any]], labels: Sequence[str], names: Mapping[str, str]
) -> None:
    """Training error (%) per epoch of each label's runs (every seed; the first one named) on ``ax``."""
    for i, label in enumerate(labels):
        seeds = [rec for name, rec in records.items() if name.split("/seed")[0] == label]
        for j, rec in enumerate(seeds):
            rows = [r for r in rec["history"] if "train_acc" in r]
            ax.plot(
                [r["epoch"] for r in rows],
                [100 * (1 - r["train_acc"]) for r in rows],
                "o-" if i % 2 else "s--",
                color=f"C{i}",
                alpha=1.0 if j == 0 else 0.5,
                markersize=3,
                label=names.get(label, label) if j == 0 else None,
            )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("training error (%)")
    ax.grid(alpha=0.3)
    ax.legend()
