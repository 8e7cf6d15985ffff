"""The one training configuration: a dataclass whose fields are the CLI flags; YAML files overlay it.

Resolution order (later wins): dataclass defaults < ``preset`` < YAML file(s) < explicit overrides (CLI flags).
The resolved configuration is saved with every run as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from imgcls.errors import ConfigError, unknown_name

__all__ = ["PRESETS", "TrainConfig", "auto_settings", "resolve_config"]


@dataclass
class TrainConfig:
    """Everything a training run needs. Every field is a CLI flag of ``imgcls train`` (``--field-name``)."""

    # What to train on what.
    model: str = "quicknet_s"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"drop_path_rate": 0.1}
    pretrained: str | None = None  # checkpoint to start from (torchvision layout or an imgcls run)
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None  # resize the dataset once at load; None keeps its own size
    channels: int | None = None  # convert the data to 1 or 3 channels; None keeps its own
    # Share of the training images held out for validation (best epoch, early stopping); the test split is
    # evaluated once, at the end. 0: no validation split (a folder's own val/ is still used).
    val_fraction: float = 0.1
    # Train (test) on a seeded, stratified share of the training (test) split: 1.0 keeps all of it. For
    # learning curves (the same model on 10%, 30%, 100% of the data) and quick experiments.
    train_subset: float = 1.0
    test_subset: float = 1.0
    skip_bad: bool = False  # leave out unreadable images of a folder (listed in the run's skipped.txt)
    # used (with a note) when the default dataset is absent; a dataset named by the user is never swapped
    fallback_dataset: str | None = "digits"

    # Optimisation. None: follows the size of the training set (see auto_settings), logged once as "auto: ...".
    epochs: float | None = None
    batch_size: int | None = None
    # "muon": Muon (imgcls.train.muon) for the convolutions' and linear layers' weights, SGD for the rest (both
    # with Nesterov momentum: the nesterov setting is for sgd);
    # "auto": muon for batches of at least AUTO_MUON_MIN_BATCH images, sgd for smaller ones (see auto_settings)
    optimizer: Literal["auto", "sgd", "adamw", "muon"] = "auto"
    # peak learning rate for batch_size (auto: scaled with it); with muon, that of the parameters SGD trains
    lr: float | None = None
    momentum: float = 0.9
    # with optimizer muon: the peak learning rate of its weight matrices (not scaled with the batch size)
    muon_lr: float = 0.07
    muon_momentum: float = 0.6  # with optimizer muon: the momentum of its weight matrices (Nesterov)
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False  # weight decay on norm weights and biases (off, as is standard)
    schedule: Literal["cosine", "onecycle", "step", "constant", "linear"] = "onecycle"
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.0  # final lr = lr * min_lr_ratio (cosine / linear)
    step_epochs: list[float] = field(default_factory=lambda: [30.0, 60.0, 90.0])  # for "step"
    step_gamma: float = 0.1
    label_smoothing: float = 0.1
    # "auto": weigh each class's loss by n / (classes * count), scikit-learn's "balanced" (imbalanced folders)
    class_weights: Literal["none", "auto"] = "none"
    # InfoBatch (imgcls.train.pruning): in every epoch but the first and the last, each image whose last loss
    # was below the mean is left out with this probability (its group's kept images weigh 1/(1-p) in the loss).
    # 0: every image every epoch. Off by default: on Fashion-MNIST 0.5 saved a quarter of the steps and cost
    # 0.2-0.3 points of the fast preset's accuracy (README, "Speed: the main job").
    prune_easy: float = 0.0
    grad_clip: float | None = None  # max global gradient norm
    accum_steps: int = 1  # gradient accumulation: optimizer step every N batches
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 where the hardware has it
    ema_decay: float | None = None  # exponential moving average of weights (e.g. 0.999); evaluated if set
    # ZFNet's renormalisation for any model: cap each conv filter's RMS after every step, after the model's
    # own post-step hook (zfnet's spec already caps at 0.1, the paper's radius)
    filter_rms_limit: float | None = None
    channels_last: bool = True
    compile: bool = False  # torch.compile the model
    # Distributed runs (torchrun): synchronised BatchNorm over the processes (CUDA only); off, each process
    # normalises its own share of the batch.
    sync_bn: bool = False

    # Data augmentation (per batch, on the training device).
    # A preset of imgcls.data.AUGMENT_PRESETS, or "auto" (follows the training set, see auto_settings); the
    # fields below override it.
    augment: str = "auto"
    crop_padding: int | None = None
    flip: bool | None = None
    erasing: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    tta_flip: bool = True  # evaluate on the image and its mirror, average the logits

    # The run.
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0
    deterministic: bool = False  # bitwise-reproducible kernels (slower on GPU)
    threads: int | None = None  # torch CPU threads; None: all cores
    out_dir: str = "runs"
    name: str | None = None  # run directory name; default: <model>-<dataset>-<time>
    resume: str | None = None  # a run directory to continue
    eval_every: int = (
        1  # validate every N epochs (and at the end): each costs about val_fraction of an epoch / 3
    )
    early_stop: int | None = None  # stop after N validations without a better validation accuracy
    # progressive resizing: training resolution of each epoch (the last repeats); empty: the data's own
    train_sizes: list[int] = field(default_factory=list)
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests)
    progress: bool = True  # a progress bar when stderr is a terminal
    # Without a bar (stderr not a terminal, or progress off): a log line every N optimizer steps; 0: none.
    log_every: int = 50
    preset: str | None = None  # "fast" or "accurate": see PRESETS

    # Fine-tuning (usually with --pretrained). The head is what the model's reset_classifier replaces.
    freeze_backbone: bool = False  # train the head only (frozen BatchNorm layers keep their statistics)
    unfreeze_after: int | None = None  # with freeze_backbone: train everything from this epoch on
    head_lr_mult: float = 1.0  # the head learns at lr * head_lr_mult (discriminative learning rates)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Named starting points, applied under YAML and flags. Their targets are measured by
# benchmarks/time_to_accuracy.py (README): fast >= 93.0% Fashion-MNIST in <= 120 s, accurate >= 94.0% in <= 600 s
# on a 2-core CPU. They are recipes for datasets of Fashion-MNIST's size.
PRESETS: dict[str, dict[str, Any]] = {
    # The dataclass defaults above, spelled out: what plain ``imgcls train`` runs on Fashion-MNIST (where the
    # automatic batch size, learning rate and epochs come to these values).
    "fast": {
        "model": "quicknet_s",
        "epochs": 6,
        "batch_size": 512,
        "optimizer": "muon",
        "lr": 0.4,
        "schedule": "onecycle",
        "warmup_epochs": 1.0,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "augment": "flip",
        "tta_flip": True,
    },
    "accurate": {
        "model": "quicknet_m",
        "epochs": 14,
        "batch_size": 512,
        "optimizer": "sgd",
        "lr": 0.4,
        "schedule": "onecycle",
        "warmup_epochs": 1.0,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "augment": "flip",
        "tta_flip": True,
    },
}

# What the fallback dataset (digits) trains with when the default dataset is absent: digits are not
# mirror-symmetric. (Batch size, learning rate and epochs follow its size, as for any dataset.)
FALLBACK_SETTINGS: dict[str, Any] = {"augment": "none", "tta_flip": False}

# The automatic settings (auto_settings): the recipe of the fast preset on datasets of at least
# AUTO_FULL_SIZE training images; on smaller ones, batches that give at least AUTO_MIN_STEPS optimizer steps an
# epoch, the learning rate scaled by the square root of the batch (Krizhevsky 2014, arXiv:1404.5997, sec. 5; on
# the 2,000-image Fashion-MNIST folder of benchmarks/own_images.py, batch 32: lr 0.1 gave 85.4% on 5,000 held-out
# images, the linear rule's 0.025 gave 82.9%), and more epochs, so that a small dataset is still seen about as
# many times as it needs (30 epochs there gave 85.1% in half the time of 50, 85.4%).
# Augmentation: the fast preset's mirror images on datasets of AUTO_FULL_SIZE images or more; on smaller ones,
# trained for many more epochs, also random crops of the image padded by a fourteenth of its side, rounded
# down (2 px at 28 and at 32, airbench's; 4 px at 64; none under 14 px). On the 2,000-image Fashion-MNIST
# folder (30 epochs, 3 seeds, the last epoch's weights, 10,000 test images) they gave 85.60% against 84.88%
# with mirror images only; on 8x8 digits a 1-px pad (an eighth of the image) cost 0.6 points (3 seeds).
AUTO_CROP_FRACTION = 14
# The optimizer: Muon where the batch is at least AUTO_MUON_MIN_BATCH, SGD below. Muon's orthogonalisation
# is a fixed cost a step (0.35 G multiply-adds for quicknet_s): 2.4 % of a step's arithmetic at batch 512, 5 %
# at 256, 38 % at 32. On Fashion-MNIST (batch 512) 6 epochs of Muon beat 7 of SGD; on the
# 2,000-image folder (batch 32, 30 epochs) Muon gained a point (86.66 % vs 85.60 % on 10,000 test images,
# 3 seeds) but took 1.6x the time, which the AVX2 machine's 2-minute budget for that folder does not have.
AUTO_MUON_MIN_BATCH = 256
AUTO_BATCH, AUTO_SGD_LR, AUTO_ADAMW_LR, AUTO_EPOCHS = 512, 0.4, 2e-3, 6
# Epochs on smaller data grow as 7 x AUTO_FULL_SIZE / n: the rule measured with SGD (7 epochs, the fast preset's
# before Muon), kept so that the smaller datasets, which train with SGD, train as before; Muon's 6 epochs are
# reached from 29,867 images on.
AUTO_GROW_EPOCHS = 7
AUTO_MIN_STEPS = 50
AUTO_FULL_SIZE = AUTO_BATCH * AUTO_MIN_STEPS  # 25,600 images
AUTO_MIN_BATCH, AUTO_MAX_EPOCHS = 16, 30


def auto_settings(cfg: TrainConfig, n_train: int, image_side: int | None = None) -> dict[str, Any]:
    """Values for the settings ``cfg`` leaves to imgcls (None, or ``augment="auto"``), for a training set of
    ``n_train`` images whose shorter side is ``image_side`` pixels.

    On a small training set the fast preset's batches of 512 give a handful of steps an epoch (2,000 images:
    3), far too few to learn; here the batch shrinks to keep at least AUTO_MIN_STEPS steps an epoch (a power
    of two, at least AUTO_MIN_BATCH), the learning rate follows the batch, and the epochs grow as the data
    shrinks (AUTO_GROW_EPOCHS x AUTO_FULL_SIZE / n, at least AUTO_EPOCHS, at most AUTO_MAX_EPOCHS): small data
    needs more passes. With many passes over few images, padded random crops join the mirror images
    (AUTO_CROP_FRACTION). The optimizer is Muon from AUTO_MUON_MIN_BATCH images a batch on, SGD below.
    """
    values: dict[str, Any] = {}
    batch = cfg.batch_size
    if batch is None:
        fit = max(1, n_train // AUTO_MIN_STEPS)
        batch = values["batch_size"] = min(AUTO_BATCH, max(AUTO_MIN_BATCH, 1 << (fit.bit_length() - 1)))
    if cfg.lr is None:
        values["lr"] = (AUTO_ADAMW_LR if cfg.optimizer == "adamw" else AUTO_SGD_LR) * math.sqrt(
            batch / AUTO_BATCH
        )
    if cfg.optimizer == "auto":
        values["optimizer"] = "muon" if batch >= AUTO_MUON_MIN_BATCH else "sgd"
    if cfg.epochs is None:
        grow = AUTO_GROW_EPOCHS * AUTO_FULL_SIZE / max(n_train, 1)
        values["epochs"] = min(AUTO_MAX_EPOCHS, max(AUTO_EPOCHS, math.ceil(grow)))
    if cfg.augment == "auto":
        pad = cfg.crop_padding if cfg.crop_padding is not None else (image_side or 0) // AUTO_CROP_FRACTION
        crops = n_train < AUTO_FULL_SIZE and pad > 0
        values["augment"] = "light" if crops else "flip"
        if crops and cfg.crop_padding is None:
            values["crop_padding"] = pad
    return values


def _field_types() -> dict[str, Any]:
    return get_type_hints(TrainConfig)


def _coerce(name: str, value: Any, typ: Any) -> Any:
    """Check/convert one value against its field type; raises ConfigError naming the field."""
    origin, args = get_origin(typ), get_args(typ)
    if value is None:
        if type(None) in args or typ is Any:
            return None
        raise ConfigError(f"'{name}' cannot be empty")
    if origin is Literal:
        if not isinstance(value, str) or value not in args:
            raise ConfigError(f"'{name}' must be one of {', '.join(map(str, args))}, got {_show(value)}")
        return value
    if args and type(None) in args:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0])
    try:
        return _convert(value, typ, origin, args, name)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"'{name}' expects {getattr(typ, '__name__', typ)}, got {_show(value)}") from None


def _show(value: Any, width: int = 40) -> str:
    """``repr(value)`` cut to ``width`` characters: an error message stays one readable line."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# The words a YAML file or flag may spell a bool with.
_BOOL_WORDS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(
    ("0", "false", "no", "off"), False
)


def _convert(value: Any, typ: Any, origin: Any, args: tuple[Any, ...], name: str) -> Any:
    """``value`` as a ``typ``; TypeError / ValueError where it is not one.

    YAML's ``true`` is a bool, and a bool is an int in Python: it is refused where a number or a name is
    expected (``batch_size: true`` would otherwise train with batches of one).
    """
    if typ is bool:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        raise ValueError(value)
    if typ in (int, float, str) and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
        raise TypeError(value)
    if typ is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if typ is float:
        return float(value)
    if typ is str:
        return str(value)
    if origin is list:
        return [_coerce(name, v, args[0]) for v in (value if isinstance(value, list) else [value])]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(value)
        return dict(value)
    return value


def overlay(cfg: TrainConfig, values: Mapping[str, Any], source: str = "overrides") -> TrainConfig:
    """Return ``cfg`` with ``values`` applied; unknown keys and wrong types raise ConfigError naming ``source``."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source} must hold a mapping of settings, not {type(values).__name__}")
    types = _field_types()
    valid = {f.name for f in fields(TrainConfig)}
    changes = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ConfigError(f"setting names in {source} must be text, got {_show(key)}")
        k = key.replace("-", "_")
        if k not in valid:
            raise unknown_name(f"setting in {source}", key, valid)
        changes[k] = _coerce(k, value, types[k])
    return dataclasses.replace(cfg, **changes)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text (byte {e.start}): save it as UTF-8"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{path}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of settings, not {type(data).__name__}")
    return data


def resolve_config(
    yaml_files: list[str | Path] | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Defaults < preset (named in YAML or overrides) < YAML files in order < overrides."""
    layers: list[tuple[str, Mapping[str, Any]]] = [(str(p), load_yaml(p)) for p in yaml_files or []]
    layers.append(("command line", dict(overrides or {})))
    preset = None
    for _, values in layers:
        preset = values.get("preset", preset)
    cfg = TrainConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise unknown_name("preset", preset, PRESETS)
        cfg = overlay(cfg, PRESETS[preset], f"preset {preset}")
    for source, values in layers:
        cfg = overlay(cfg, values, source)
    validate(cfg)
    return cfg


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric setting: ``lo`` to ``hi`` (None: no limit), each end included unless open.

    Floats must also be finite: a NaN momentum trains to NaN and an infinite epoch count never ends.
    """

    lo: float
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if value < self.lo or (self.lo_open and value == self.lo):
            return False
        return self.hi is None or (value < self.hi or (not self.hi_open and value == self.hi))

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"in {left}{_num(self.lo)}, {_num(self.hi)}{right}"


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


# Every numeric setting and its allowed values (a setting left at None is not checked; a list is checked item by
# item). tests/train/test_config_validation.py checks that every int and float field has a row here or in CHOICES.
RANGES: dict[str, Range] = {
    "epochs": Range(0, lo_open=True),
    "batch_size": Range(2, 2**20),  # BatchNorm cannot normalise a batch of one image in training
    "lr": Range(0, lo_open=True),
    "momentum": Range(0, 1, hi_open=True),  # SGD momentum, or AdamW's beta1
    "muon_lr": Range(0, lo_open=True),
    "muon_momentum": Range(0, 1, hi_open=True),
    "weight_decay": Range(0),
    "warmup_epochs": Range(0),
    "min_lr_ratio": Range(0, 1),
    "step_epochs": Range(0),
    "step_gamma": Range(0, 1, lo_open=True),
    "label_smoothing": Range(0, 1, hi_open=True),
    "prune_easy": Range(0, 0.9),  # a probability; 1 would leave the easy images out for good
    "grad_clip": Range(0, lo_open=True),
    "accum_steps": Range(1, 2**20),
    "ema_decay": Range(0, 1, lo_open=True, hi_open=True),
    "filter_rms_limit": Range(0, lo_open=True),
    "image_size": Range(8, 1024),  # a side length in pixels; larger is out of reach of a CPU or one GPU
    "train_sizes": Range(8, 1024),  # progressive resizing: side lengths, as image_size
    "crop_padding": Range(0, 256),
    "erasing": Range(0, 1),  # a probability
    "mixup": Range(0),  # Beta alpha; 0 is off
    "cutmix": Range(0),
    "seed": Range(0, 2**63 - 1),
    "threads": Range(1, 1024),
    "eval_every": Range(1),
    "early_stop": Range(1),
    "val_fraction": Range(0, 0.9),
    "train_subset": Range(0, 1, lo_open=True),
    "test_subset": Range(0, 1, lo_open=True),
    "max_steps": Range(1),
    "log_every": Range(0),  # 0: only the per-epoch line
    "unfreeze_after": Range(1),  # epochs trained with the backbone frozen
    "head_lr_mult": Range(0, lo_open=True),
}
# Settings with a few allowed values.
CHOICES: dict[str, tuple[int, ...]] = {"channels": (1, 3)}  # grey or RGB


def problems(cfg: TrainConfig) -> list[str]:
    """Every setting of ``cfg`` that is out of range, one line each (empty when ``cfg`` is valid)."""
    found = []
    for name, allowed in RANGES.items():
        value = getattr(cfg, name)
        for v in value if isinstance(value, list) else [value]:
            if v is not None and v not in allowed:
                found.append(f"{name} must be {allowed}, got {_show(v)}")
    for name, choices in CHOICES.items():
        if (value := getattr(cfg, name)) is not None and value not in choices:
            found.append(f"{name} must be one of {', '.join(map(str, choices))}, got {_show(value)}")
    if cfg.unfreeze_after is not None and not cfg.freeze_backbone:
        found.append("unfreeze_after needs freeze_backbone: add --freeze-backbone or drop --unfreeze-after")
    if not found and cfg.epochs is not None and cfg.warmup_epochs > cfg.epochs:
        found.append(f"warmup_epochs must not exceed epochs ({cfg.warmup_epochs:g} > {cfg.epochs:g})")
    return found


def validate(cfg: TrainConfig) -> None:
    """Raise one ConfigError listing every out-of-range setting of ``cfg``, on one line separated by '; '."""
    found = problems(cfg)
    if found:
        raise ConfigError("; ".join(found))
