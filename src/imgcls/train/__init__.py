"""Training: ``train(TrainConfig(...))`` runs a whole training job and returns its metrics and run directory."""

from imgcls.train.checkpoint import LoadedRun, load_run
from imgcls.train.config import PRESETS, TrainConfig, resolve_config
from imgcls.train.trainer import TrainingDivergedError, TrainResult, train

__all__ = [
    "PRESETS",
    "LoadedRun",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "load_run",
    "resolve_config",
    "train",
]
