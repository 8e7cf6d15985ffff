"""The papers' claims as experiments anyone can run: ``imgcls experiment list | run NAME``.

Each module declares one claim (paper, figure), the runs it needs and the report it writes; the shared runner
(:mod:`imgcls.experiments.runner`) trains the runs once into a cache, resumes interrupted ones, and writes
``report.md``, ``results.json`` and PNG plots. Importing this package is light: an experiment's module, torch
and matplotlib load when it runs.
"""

from imgcls.experiments.runner import (
    RESULT_FIELDS,
    SCALES,
    Comparison,
    Experiment,
    ExperimentReport,
    Outcome,
    Run,
    get_experiment,
    list_experiments,
    run_experiment,
)

__all__ = [
    "RESULT_FIELDS",
    "SCALES",
    "Comparison",
    "Experiment",
    "ExperimentReport",
    "Outcome",
    "Run",
    "get_experiment",
    "list_experiments",
    "run_experiment",
]
