"""The training loop behind ``imgcls.train(config)`` and ``imgcls train``.

One epoch is: draw the epoch's shuffled, augmented batches (a pure function of seed and epoch), step the
optimizer, evaluate on the validation split (every ``eval_every`` epochs), check that the weights and the
loss are finite (a diverged model is never saved), write the checkpoint atomically; ``best.safetensors`` holds
the weights of the best validation accuracy. The test split is evaluated once, at the end, on the weights the
run reports (the best on validation, else the last): no choice is ever made on it.

A run stopped at any point and resumed with ``--resume`` ends with the same weights as one that never stopped
(same seed, deterministic mode). A run claims its directory for its whole life, so two runs never mix their
files, and first removes the temporaries that killed writes left there.

Started by torchrun (see ``distributed.py``), every process runs this trainer on its share of each global
batch, the model wrapped in DistributedDataParallel; the learning-rate schedule counts global steps, the
evaluation counts are summed over the processes, and only rank 0 writes files (the unwrapped model's
weights, so a checkpoint loads in one process or in any number), logs and draws the progress bar.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

import imgcls
from imgcls.data import AugmentConfig, BatchLoader, get_augment, load_dataset, make_loader, subset
from imgcls.data.info import DatasetInfo, adapt_info, match_classes
from imgcls.errors import CheckpointError, ConfigError, DataError, ImgclsError
from imgcls.metrics import EvalResult, evaluate
from imgcls.models import create_model, get_model_spec, load_pretrained
from imgcls.models.layers.filter_rms import renormalize_filters_
from imgcls.models.pretrained import load_state_dict_file, remap_legacy_keys
from imgcls.models.registry import AuxOutputs
from imgcls.train import checkpoint as ckpt
from imgcls.train import distributed
from imgcls.train.config import (
    FALLBACK_SETTINGS,
    TrainConfig,
    auto_settings,
    load_yaml,
    overlay,
    validate,
)
from imgcls.train.ema import ModelEma
from imgcls.train.finetune import head_module_names, set_backbone_frozen
from imgcls.train.optim import build_optimizer, build_schedule
from imgcls.train.pruning import EasyPruner
from imgcls.utils.device import autocast, resolve_amp, resolve_device
from imgcls.utils.files import atomic_path, atomic_write_text, remove_stale_temporaries
from imgcls.utils.hardware import MIN_STEP_SPEEDUP, bf16_step_speedup, one_thread_step_speedup

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TrainResult", "TrainingDivergedError", "plot_curves", "train"]

log = logging.getLogger(__name__)

# Settings that may differ when a run is resumed; everything else is taken from the saved config.
RESUME_OVERRIDABLE = (
    "epochs",
    "device",
    "threads",
    "progress",
    "log_every",
    "eval_every",
    "max_steps",
    "sync_bn",
)
_NAN_CHECK_EVERY = 20  # steps between loss checks (each check synchronises with the device)


class TrainingDivergedError(ImgclsError):
    """The loss or the weights became NaN or infinite; nothing non-finite was saved."""


@dataclass
class TrainResult:
    run_dir: Path
    test_acc: float  # top-1 on the test split of the weights the run reports (`weights`), evaluated once
    test_top5: float
    val_acc: float | None  # the best validation top-1 (None without a validation split)
    best_epoch: int | None  # the epoch of val_acc, whose weights are best.safetensors
    weights: str  # "best" (by validation) or "last" (no validation split)
    epochs: int
    steps: int
    train_seconds: float  # wall time of the training steps (no evaluation, no start-up)
    total_seconds: float  # wall time of the whole call
    images_per_sec: float
    history: list[dict[str, Any]] = field(default_factory=list)
    eval: EvalResult | None = None


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or resume) a model as ``cfg`` says; returns the final test metrics and the run directory."""
    return _Trainer(cfg).fit()


def _augment_config(cfg: TrainConfig) -> AugmentConfig:
    """The named augmentation preset with the config's explicit overrides applied."""
    fields_ = ("crop_padding", "flip", "erasing", "mixup", "cutmix")
    overrides = {k: getattr(cfg, k) for k in fields_ if getattr(cfg, k) is not None}
    return replace(get_augment(cfg.augment), **overrides)


def _resume_config(cfg: TrainConfig) -> TrainConfig:
    run_dir = Path(cfg.resume)  # type: ignore[arg-type]
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(
            f"cannot resume '{run_dir}': it has no config.yaml (is it an imgcls run directory?)"
        )
    saved = overlay(TrainConfig(), load_yaml(saved_path), str(saved_path))  # damaged: one-line ConfigError
    defaults = TrainConfig()
    changes = {k: getattr(cfg, k) for k in RESUME_OVERRIDABLE if getattr(cfg, k) != getattr(defaults, k)}
    return replace(saved, resume=str(run_dir), **changes)


def _keys_varying_with(
    arg: str, name: str, num_classes: int, in_chans: int, image_size: int, kwargs: dict
) -> set[str]:
    """Keys whose shape depends on ``arg`` (num_classes or in_chans): built twice on the meta device (free)
    with ``arg`` one apart, and compared."""
    args = {"num_classes": num_classes, "in_chans": in_chans}
    with torch.device("meta"):
        a = create_model(name, image_size=image_size, **args, **kwargs)
        b = create_model(name, image_size=image_size, **(args | {arg: args[arg] + 1}), **kwargs)
    sa, sb = a.state_dict(), b.state_dict()
    return {k for k in sa if k in sb and sa[k].shape != sb[k].shape}


def _classifier_keys(name: str, num_classes: int, in_chans: int, image_size: int, kwargs: dict) -> set[str]:
    """Keys whose shape depends on num_classes: the classifier a fine-tuning run replaces."""
    return _keys_varying_with("num_classes", name, num_classes, in_chans, image_size, kwargs)


def _input_keys(name: str, num_classes: int, in_chans: int, image_size: int, kwargs: dict) -> set[str]:
    """Keys whose shape depends on in_chans: the input layer a checkpoint of other channels is adapted in."""
    return _keys_varying_with("in_chans", name, num_classes, in_chans, image_size, kwargs)


def _unfilled_keys(
    state: dict[str, torch.Tensor], name: str, num_classes: int, in_chans: int, image_size: int, kwargs: dict
) -> list[str]:
    """Keys of the model so built that ``state`` cannot fill: missing, or of another shape, leaving aside the
    classifier (replaced) and the input channels of the input layer (adapted)."""
    with torch.device("meta"):
        own = create_model(
            name, num_classes=num_classes, in_chans=in_chans, image_size=image_size, **kwargs
        ).state_dict()
    head = _classifier_keys(name, num_classes, in_chans, image_size, kwargs)
    inputs = _input_keys(name, num_classes, in_chans, image_size, kwargs)
    unfilled = []
    for k, v in own.items():
        if k in head or k.endswith("num_batches_tracked"):
            continue
        have = state[k].shape if k in state else None
        if have is not None and k in inputs and len(have) == v.ndim > 2:
            have = have[:1] + v.shape[1:2] + have[2:]  # the channel dimension is adapted
        if have != v.shape:
            unfilled.append(k)
    return unfilled


class _Trainer:
    class_weight: torch.Tensor | None = None  # --class-weights auto: set once the data is loaded

    def __init__(self, cfg: TrainConfig) -> None:
        if not cfg.resume and cfg.name and distributed.restart_count() > 0:
            run_dir = Path(cfg.out_dir) / cfg.name
            if (run_dir / ckpt.STATE).is_file():  # torchrun --max-restarts started us again: carry on
                log.warning(
                    "restart %d: resuming %s from its last checkpoint", distributed.restart_count(), run_dir
                )
                cfg = replace(cfg, resume=str(run_dir))
        if cfg.resume:
            cfg = _resume_config(cfg)
        validate(cfg)
        self.cfg = cfg
        self.t_start = time.perf_counter()

    # ----------------------------------------------------------------------------------------------- set-up
    def _setup_runtime(self) -> None:
        cfg = self.cfg
        # the thread count to give back at the end, where the automatic choice (_tune_cpu_step) changed it
        self.threads_before: int | None = None
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.device = resolve_device(cfg.device)
        self.dist, self.device = distributed.setup(self.device)
        if cfg.sync_bn and self.device.type != "cuda":
            self.dist.close()
            raise ConfigError(
                "--sync-bn needs CUDA GPUs (NCCL): PyTorch's SyncBatchNorm does not run on CPUs; drop --sync-bn "
                "(each process then normalises its own share of the batch)"
            )
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        log.debug("device %s, autocast %s, %d threads", self.device, self.amp_dtype, torch.get_num_threads())

    def _load_data(self) -> None:
        cfg = self.cfg
        try:
            self.train_set = self._load_split("train")
        except DataError as e:
            # Only the main job (the default dataset) falls back; a dataset asked for by name is never swapped,
            # and only settings still at their defaults take the fallback's values.
            defaults = TrainConfig()
            if (
                not cfg.fallback_dataset
                or cfg.dataset != defaults.dataset
                or cfg.fallback_dataset == cfg.dataset
            ):
                raise
            settings = {k: v for k, v in FALLBACK_SETTINGS.items() if getattr(cfg, k) == getattr(defaults, k)}
            log.warning("note: %s", e)
            log.warning(
                "note: training on '%s' instead%s (install the dataset or pass --dataset)",
                cfg.fallback_dataset,
                f", with {', '.join(f'{k} {v}' for k, v in settings.items())}" if settings else "",
            )
            self.cfg = cfg = overlay(
                replace(cfg, dataset=cfg.fallback_dataset, fallback_dataset=None), settings, "fallback"
            )
            self.train_set = self._load_split("train")
        try:
            self.val_set = self._load_split("val")
        except ConfigError:  # no validation split: val_fraction 0 and no val/ folder of its own
            self.val_set = None
        self.test_set = self._load_split("test")
        self.info = self.train_set.info
        self._skipped = [
            p for ds in (self.train_set, self.val_set, self.test_set) for p in getattr(ds, "skipped", ())
        ]
        if self.val_set is None and cfg.early_stop:
            raise ConfigError(
                "early stopping watches the validation accuracy, and this run has no validation split: "
                "set --val-fraction above 0 or drop --early-stop"
            )
        self._resolve_auto()
        cfg = self.cfg
        self.class_weight = self._class_weight() if cfg.class_weights == "auto" else None
        aug = _augment_config(cfg)
        loader_kw = dict(
            device=self.device,
            seed=cfg.seed,
            channels_last=cfg.channels_last,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.train_loader = make_loader(self.train_set, cfg.batch_size, train=True, augment=aug, **loader_kw)
        eval_batch = max(cfg.batch_size, 500)  # type: ignore[type-var]
        self.val_loader = (
            make_loader(self.val_set, eval_batch, train=False, **loader_kw)
            if self.val_set is not None
            else None
        )
        self.test_loader = make_loader(self.test_set, eval_batch, train=False, **loader_kw)
        if len(self.train_loader) < cfg.accum_steps:
            raise ConfigError(
                f"the training set gives {len(self.train_loader)} batches of {cfg.batch_size}, fewer than "
                f"accum_steps={cfg.accum_steps}: lower --batch-size or --accum-steps"
            )

    def _class_weight(self) -> torch.Tensor:
        """Each class's loss weighed by n / (classes x count): every class weighs as much in all (a rare
        class's images count for more), scikit-learn's "balanced" rule."""
        labels = self.train_set.labels
        labels = labels if isinstance(labels, torch.Tensor) else torch.tensor(labels, dtype=torch.int64)
        k = self.info.num_classes
        counts = torch.bincount(labels, minlength=k).double()
        weight = (len(labels) / (k * counts.clamp(min=1))).float()
        log.info(
            "class weights (balanced): %s",
            ", ".join(f"{name} {w:.2f}" for name, w in zip(self.info.classes, weight.tolist())),
        )
        return weight.to(self.device)

    def _load_split(self, split: str) -> Any:
        cfg = self.cfg
        dataset = self._load_whole_split(split)
        share = {"train": cfg.train_subset, "test": cfg.test_subset}.get(split, 1.0)
        return dataset if share >= 1.0 else subset(dataset, share, cfg.seed)

    def _load_whole_split(self, split: str) -> Any:
        cfg = self.cfg
        return load_dataset(
            cfg.dataset,
            split,
            data_dir=cfg.data_dir,
            download=cfg.download,
            image_size=cfg.image_size,
            channels=cfg.channels,
            val_fraction=cfg.val_fraction,
            skip_bad=cfg.skip_bad,
        )

    def _resolve_auto(self) -> None:
        """Fill the settings left to "auto" from the training set's size, and say so once."""
        n = len(self.train_set)
        values = auto_settings(self.cfg, n, min(self.info.image_size))
        if not values:
            return
        self.cfg = replace(self.cfg, **values)
        validate(self.cfg)
        shown = dict(
            batch_size="batch",
            lr="lr",
            epochs="epochs",
            optimizer="optimizer",
            augment="augment",
            crop_padding="crop padding",
        )
        log.info(
            "auto: %s (for %s training images; set %s to choose)",
            ", ".join(
                f"{shown[k]} {v:g}" if not isinstance(v, str) else f"{shown[k]} {v}"
                for k, v in values.items()
            ),
            f"{n:,}",
            "/".join(f"--{k.replace('_', '-')}" for k in values),
        )

    def _build_model(self) -> None:
        saved_info = ckpt.read_model_info(Path(self.cfg.resume)) if self.cfg.resume else None
        if saved_info is not None:  # normalise as the run was trained (a checkpoint's statistics, perhaps)
            self._set_normalization(saved_info["mean"], saved_info["std"], "the run's saved")
        elif self.cfg.pretrained:
            self._read_pretrained()
        cfg, info = self.cfg, self.info
        image_size = info.image_size[0]
        spec = get_model_spec(cfg.model)
        self.model_info = {
            "model": cfg.model,
            "model_kwargs": dict(cfg.model_kwargs),
            "family": spec.family,
            "num_classes": info.num_classes,
            "in_chans": info.channels,
            "image_size": image_size,
            "classes": list(info.classes),
            "mean": list(info.mean),
            "std": list(info.std),
            "dataset": info.name,
            "tta_flip": cfg.tta_flip,
            "imgcls_version": imgcls.__version__,
        }
        model = ckpt.build_model_from_info(self.model_info)
        if saved_info is not None:
            ckpt.check_model_config(model, saved_info, Path(cfg.resume))  # type: ignore[arg-type]
        if (model_cfg := ckpt.model_config(model)) is not None:
            self.model_info["model_config"] = model_cfg
        if cfg.pretrained and not cfg.resume:
            self._load_pretrained(model, image_size)
        # The head (what reset_classifier replaces) trains alone while the backbone is frozen.
        self.head = head_module_names(model) if cfg.freeze_backbone else set()
        self._backbone_frozen: bool | None = None
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and self.dist.enabled:  # same parameter names: checkpoints unchanged
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.post_step = spec.post_step  # the model's own rule after each optimiser step (ZFNet's), or None
        self.ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay else None
        self.step_model = self._step_model()
        if self.device.type == "cpu":
            self._tune_cpu_step()

    def _tune_cpu_step(self) -> None:
        """On a CPU, what the run leaves to imgcls is chosen by timing a few training steps of this model at the
        run's per-process batch (capped at 256), both ways, on a copy of the model, the run's random stream left
        as it was (a seed gives the same run measured or cached); the verdicts are cached per machine, model and
        batch shape (:mod:`imgcls.utils.hardware`).

        - ``--amp auto`` on a CPU with fast bf16 products: bf16 only if the step is measurably faster with it
          (rank 0 measures, every rank takes its verdict);
        - no ``--threads``, one process: one thread if the step is measurably faster on one than on all
          (small batches: the threads' meeting at every operator costs more than the split saves).
        """
        cfg, info = self.cfg, self.info
        shape = (min(cfg.batch_size // self.dist.world_size, 256), info.channels, *info.image_size)
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        key = f"{cfg.model}|{sorted(cfg.model_kwargs.items())}|{info.num_classes}|{shape}|{fmt}"
        threads = torch.get_num_threads()

        def measure(
            speedup_of: Callable[[str, Callable[[bool], None]], float],
            key: str,
            form: Callable[[bool], tuple[torch.dtype | None, int]],  # alternative? -> (autocast, threads)
        ) -> float:
            probe = copy.deepcopy(self.model)  # its own buffers and gradients: the run's model is untouched
            with torch.random.fork_rng(devices=[]):
                x = torch.randn(shape, device=self.device).contiguous(memory_format=fmt)
                y = torch.randint(0, info.num_classes, shape[:1], device=self.device)

                def step(alternative: bool) -> None:
                    amp, n = form(alternative)
                    torch.set_num_threads(n)
                    try:
                        with autocast(self.device, amp):
                            loss, _ = self._loss(probe(x), y)
                        loss.backward()
                    finally:
                        torch.set_num_threads(threads)

                return speedup_of(key, step)

        if cfg.amp == "auto" and self.amp_dtype == torch.bfloat16:
            speedup = self.dist.on_main(
                lambda: measure(
                    bf16_step_speedup, key, lambda bf16: (torch.bfloat16 if bf16 else None, threads)
                )
            )
            if speedup < MIN_STEP_SPEEDUP:
                self.amp_dtype = None
            log.info(
                "auto: %s (a training step of this model runs %.2fx as fast in bf16 as in fp32 here)",
                "bf16 autocast" if self.amp_dtype else "fp32, no autocast",
                speedup,
            )
        if cfg.threads is None and not self.dist.enabled and threads > 1:
            amp = self.amp_dtype
            speedup = measure(
                one_thread_step_speedup, f"{key}|{amp}", lambda one: (amp, 1 if one else threads)
            )
            if speedup >= MIN_STEP_SPEEDUP:
                torch.set_num_threads(1)
                self.threads_before = threads  # given back when the run ends
            log.info(
                "auto: %d thread%s (a training step of this model runs %.2fx as fast on one thread as on %d here)",
                torch.get_num_threads(),
                "" if torch.get_num_threads() == 1 else "s",
                speedup,
                threads,
            )

    def _step_model(self) -> nn.Module:
        """The module the training steps call: the model, in DistributedDataParallel across processes (which
        averages the gradients), compiled on request. The unwrapped ``self.model`` is what is saved."""
        model: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)  # parameters that train now
        # torch.compile trades a start-up compile for faster steps
        return torch.compile(model) if self.cfg.compile else model

    def _read_pretrained(self) -> None:
        """Read ``--pretrained`` once: its weights, the stem they fit, and the normalisation a run carries."""
        cfg = self.cfg
        path = Path(cfg.pretrained)  # type: ignore[arg-type]
        run_dir = None
        if path.is_dir():  # an imgcls run directory
            run_dir = path
            path = path / (ckpt.WEIGHTS_BEST if (path / ckpt.WEIGHTS_BEST).is_file() else ckpt.WEIGHTS_LAST)
        elif (path.parent / ckpt.MODEL_INFO).is_file():  # a weights file inside one
            run_dir = path.parent
        self.pretrained_path = path
        self.pretrained_state = remap_legacy_keys(load_state_dict_file(path))
        self.pretrained_classes = None
        if run_dir is not None:
            saved = ckpt.read_model_info(run_dir)
            self.pretrained_classes = saved.get("classes")
            self._set_normalization(saved["mean"], saved["std"], f"the checkpoint's ({run_dir})")
        self._fit_stem()

    def _fit_stem(self) -> None:
        """Use the stem the checkpoint has: the native one on small images too, or the small-input one on
        large images, when the other one's weights do not fit it. The choice is saved in ``model_kwargs``."""
        cfg, info = self.cfg, self.info
        spec = get_model_spec(cfg.model)
        if spec.small_input_kwargs is None or "small_input" in cfg.model_kwargs:
            return  # one stem only, or the user chose
        size, args = info.image_size[0], (info.num_classes, info.channels, info.image_size[0])
        default = size <= 64  # create_model's rule
        state = self.pretrained_state
        if not _unfilled_keys(state, cfg.model, *args, cfg.model_kwargs | {"small_input": default}):
            return
        other = cfg.model_kwargs | {"small_input": not default}
        if _unfilled_keys(state, cfg.model, *args, other):
            return  # neither fits: loading names the first difference
        log.info(
            "the checkpoint has %s's %s stem: using it on %d px images%s",
            cfg.model,
            "native" if default else "small-input",
            size,
            "" if not default else f" (--image-size {spec.input_size[-1]} would upsample them to its size)",
        )
        self.cfg = replace(cfg, model_kwargs=other)

    def _set_normalization(self, mean: list[float], std: list[float], source: str) -> None:
        """Normalise the data with ``mean`` and ``std`` (converted to the data's channels) from now on."""
        info = self.info
        if len(mean) != info.channels:
            if {len(mean), info.channels} != {1, 3}:
                log.info(
                    "%s normalisation has %d channels, the data %d: keeping the data's",
                    source,
                    len(mean),
                    info.channels,
                )
                return
            stats = DatasetInfo(info.name, info.classes, len(mean), info.image_size, tuple(mean), tuple(std))
            adapted = adapt_info(
                stats, channels=info.channels
            )  # RGB -> grey: luma weights; grey -> RGB: repeat
            mean, std = list(adapted.mean), list(adapted.std)
        if (tuple(mean), tuple(std)) == (info.mean, info.std):
            return
        log.info(
            "normalising with %s mean %s and std %s (the data's own: %s, %s)",
            source,
            mean,
            std,
            info.mean,
            info.std,
        )
        self.info = replace(info, mean=tuple(mean), std=tuple(std))
        for loader in (self.train_loader, self.val_loader, self.test_loader):
            if loader is not None:
                loader.set_normalization(self.info)

    def _load_pretrained(self, model: nn.Module, image_size: int) -> None:
        cfg, info = self.cfg, self.info
        state = dict(self.pretrained_state)
        own = model.state_dict()
        args = (cfg.model, info.num_classes, info.channels, image_size, cfg.model_kwargs)
        head = _classifier_keys(*args)
        mismatched = {k for k in head if k in state and state[k].shape != own[k].shape}
        if not mismatched and self.pretrained_classes is not None:
            mismatched = self._match_head_classes(state, head)
        if mismatched:
            # Fine-tuning to another class count: keep the new, freshly initialised classifier.
            log.info("pretrained classifier has another class count: replacing %d tensors", len(mismatched))
            state = {k: v for k, v in state.items() if k not in mismatched}
            state.update({k: own[k] for k in mismatched})
        try:
            load_pretrained(model, state, input_keys=_input_keys(*args))
        except CheckpointError as e:
            spec = get_model_spec(cfg.model)
            stems = " with either of its stems" if spec.small_input_kwargs is not None else ""
            raise CheckpointError(
                f"--pretrained '{self.pretrained_path}' does not fit {cfg.model}{stems}: {e}"
            ) from None
        del self.pretrained_state  # the model holds the weights now

    def _match_head_classes(self, state: dict[str, torch.Tensor], head: set[str]) -> set[str]:
        """A run's classifier for as many classes as the data: kept when its classes are the data's, by name
        (rows reordered when the same names come in another order), else the head keys to replace: another
        task with the same class count."""
        classes, ours = list(self.pretrained_classes or []), list(self.info.classes)
        try:
            remap = match_classes(classes, ours, self.info.name)
        except CheckpointError:
            log.info(
                "the pretrained run's classes (%s) are not the data's (%s): its classifier is replaced",
                ", ".join(classes[:10]),
                ", ".join(ours[:10]),
            )
            return {k for k in head if k in state}
        if remap is not None:  # the data's class i is the run's output remap[i]
            log.info(
                "the pretrained run lists the data's classes in another order: its classifier is reordered"
            )
            index = torch.tensor(remap)
            for k in head:
                if k in state and state[k].shape[:1] == (len(ours),):
                    state[k] = state[k][index]
        return set()

    def _freeze_for(self, epoch: int) -> None:
        """Freeze the backbone in the epochs before ``unfreeze_after`` (all of them without it); a pure
        function of the epoch, so a resumed run freezes as the uninterrupted one did."""
        cfg = self.cfg
        frozen = cfg.unfreeze_after is None or epoch < cfg.unfreeze_after
        n = set_backbone_frozen(self.model, self.head, frozen)
        if frozen != self._backbone_frozen and self.dist.enabled:
            self.step_model = self._step_model()  # DistributedDataParallel reduces the parameters that train
        if frozen != self._backbone_frozen:
            if frozen:
                log.info(
                    "training the head (%s) only: %d backbone tensors frozen", ", ".join(sorted(self.head)), n
                )
            else:
                log.info("epoch %d: the backbone is unfrozen, every parameter trains", epoch + 1)
            self._backbone_frozen = frozen

    # ---------------------------------------------------------------------------------------------- the run
    def _claim_run_dir(self) -> tuple[Path, ckpt.RunClaim]:
        """The run directory, claimed for this process: refused if another run holds it (see ckpt.claim_run_dir).

        A name the user gave is kept (and refused while in use); a default, timestamped one that exists
        already gets a suffix (-2, -3, ...), so two runs started in the same second never share a directory.
        """
        cfg = self.cfg
        if cfg.resume:
            run_dir = Path(cfg.resume)
            return run_dir, ckpt.claim_run_dir(run_dir)
        if cfg.name:
            run_dir = Path(cfg.out_dir) / cfg.name
            run_dir.mkdir(parents=True, exist_ok=True)
            claim = ckpt.claim_run_dir(run_dir)
            try:
                _refuse_existing_run(run_dir)
            except ConfigError:
                claim.release()
                raise
            return run_dir, claim
        dataset = self.info.name.replace(":", "_").replace("/", "_")
        base = Path(cfg.out_dir) / f"{cfg.model}-{dataset}-{datetime.now():%Y%m%d-%H%M%S}"
        base.parent.mkdir(parents=True, exist_ok=True)
        run_dir, n = base, 1
        while True:
            try:
                run_dir.mkdir()  # exclusive: exactly one process creates it
            except FileExistsError:
                n += 1
                run_dir = base.with_name(f"{base.name}-{n}")
                continue
            return run_dir, ckpt.claim_run_dir(run_dir)

    def _prepare_run_dir(self) -> None:
        """Clear what killed writes left in the (claimed) run directory; for a new run, describe the run."""
        if removed := remove_stale_temporaries(self.run_dir):
            log.info("removed %d temporary file(s) that interrupted writes left in %s", removed, self.run_dir)
        if not self.cfg.resume:
            atomic_write_text(
                self.run_dir / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False)
            )
            ckpt.save_model_info(self.run_dir, self.model_info)

    def fit(self) -> TrainResult:
        if (
            self.cfg.name and not self.cfg.resume
        ):  # at once, not after loading the data and building the model
            _refuse_existing_run(Path(self.cfg.out_dir) / self.cfg.name)
        self._setup_runtime()
        quiet = self.dist.enabled and not self.dist.is_main
        pkg_log = logging.getLogger("imgcls")
        level = pkg_log.level
        if quiet:  # one voice: rank 0 logs (errors are every rank's to report)
            pkg_log.setLevel(logging.ERROR)
        try:
            self._load_data()
            self._build_model()
            claim: ckpt.RunClaim | None = None

            def claim_and_prepare() -> Path:
                nonlocal claim
                self.run_dir, claim = self._claim_run_dir()
                try:
                    self._prepare_run_dir()
                except BaseException:
                    claim.release()
                    raise
                return self.run_dir

            # rank 0 claims the directory; the other ranks learn its (perhaps timestamped) name
            self.run_dir = self.dist.on_main(claim_and_prepare)
            try:
                return self._run()
            finally:
                if claim is not None:
                    claim.release()
        finally:
            if quiet:
                pkg_log.setLevel(level)
            if self.threads_before is not None:
                torch.set_num_threads(self.threads_before)
            self.dist.close()

    def _run(self) -> TrainResult:
        num_epochs = self._build_optimizer()
        start_epoch, step, best_acc, history = self._begin(num_epochs)
        step = self._train_epochs(start_epoch, num_epochs, step, best_acc, history)
        return self._finish(step, history)

    def _build_optimizer(self) -> int:
        """The optimizer, schedule and loss scaler of the run, and its planned steps; returns its epochs."""
        cfg = self.cfg
        self.steps_per_epoch = steps_per_epoch = len(self.train_loader) // cfg.accum_steps
        total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        num_epochs = math.ceil(total_steps / steps_per_epoch)
        self.pruner = self._build_pruner(num_epochs)
        # With easy images left out, an epoch has fewer steps than steps_per_epoch: each epoch plans the steps
        # left (_plan_epoch) and the schedule and the training loop follow that plan, so the schedule still
        # ends at the run's last step. Without pruning the plan stays total_steps.
        self.total_steps = self.planned_steps = total_steps
        self.optimizer = build_optimizer(self.model, cfg)
        self.schedule = build_schedule(self.optimizer, cfg, lambda: self.planned_steps, steps_per_epoch)
        # fp16 needs loss scaling against gradient underflow; bf16 has fp32's range and needs none.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        return num_epochs

    def _build_pruner(self, num_epochs: int) -> EasyPruner | None:
        """InfoBatch's pruning of easy images (--prune-easy), where the training images are in memory."""
        cfg = self.cfg
        if not cfg.prune_easy:
            return None
        if not isinstance(self.train_loader, BatchLoader):
            log.warning(
                "--prune-easy needs the training images in memory, and this dataset streams from disk: "
                "every epoch trains on all of them"
            )
            return None
        self.train_loader.with_index = True
        return EasyPruner(len(self.train_set), cfg.prune_easy, num_epochs, cfg.seed)

    def _plan_epoch(self, epoch: int, num_epochs: int, step: int) -> None:
        """Choose the images of ``epoch`` (pruning) and plan the run's steps from here to its end."""
        pruner, loader, accum = self.pruner, self.train_loader, self.cfg.accum_steps
        total_steps = self.total_steps  # the run's steps without pruning (at most --max-steps)
        assert pruner is not None and isinstance(loader, BatchLoader)
        full = self.steps_per_epoch
        loader.set_subset(pruner.plan(epoch))
        steps = len(loader) // accum
        # this epoch's steps, then the later pruned epochs as long as this one and the full ones whole
        plan = [steps] + [steps if pruner.prunes(e) else full for e in range(epoch + 1, num_epochs)]
        plan[-1] = min(plan[-1], total_steps - (num_epochs - 1) * full)  # a fractional --epochs cuts the last
        self.planned_steps = min(total_steps, step + sum(plan))
        if loader.subset is not None:
            log.info(
                "epoch %d: %s of %s training images (easy ones left out with probability %g, InfoBatch)",
                epoch + 1,
                f"{len(loader.subset):,}",
                f"{len(self.train_set):,}",
                pruner.prob,
            )

    def _begin(self, num_epochs: int) -> tuple[int, int, float, list[dict[str, Any]]]:
        """Restore a resumed run's state or announce a new run; returns the first epoch, the step, the best
        validation accuracy so far (-1 for none) and the history of the epochs done."""
        cfg, dist = self.cfg, self.dist
        start_epoch, step, best_acc, history = 0, 0, -1.0, []
        if cfg.resume:
            start_epoch, step, best_acc, history = self._restore(self.run_dir / ckpt.STATE)
            log.info("resuming %s at epoch %d/%d", self.run_dir, start_epoch + 1, num_epochs)
        else:
            log.info(
                "training %s (%s parameters) on %s: %s train / %s / %s test images, %d epochs, device %s%s",
                cfg.model,
                f"{sum(p.numel() for p in self.model.parameters()):,}",
                self.info.name,
                f"{len(self.train_set):,}",
                f"{len(self.val_set):,} validation" if self.val_set is not None else "no validation",
                f"{len(self.test_set):,}",
                num_epochs,
                self.device,
                f", {str(self.amp_dtype).replace('torch.', '')} autocast" if self.amp_dtype else "",
            )
            if self.val_set is None:
                log.info(
                    "no validation split: the last weights are the run's; the test split is scored at the end"
                )
            if self._skipped and dist.is_main:
                self._write_skipped()
        if dist.rank:  # the same weights on every rank, but each its own dropout masks
            torch.manual_seed(cfg.seed + 7919 * dist.rank + start_epoch)
        if dist.enabled:
            log.info(
                "%d processes (%s), global batch %d: %d per process",
                dist.world_size,
                dist.backend,
                cfg.batch_size,
                cfg.batch_size // dist.world_size,  # type: ignore[operator]
            )
        return start_epoch, step, best_acc, history

    def _train_epochs(
        self,
        start_epoch: int,
        num_epochs: int,
        step: int,
        best_acc: float,
        history: list[dict[str, Any]],
    ) -> int:
        """Train, validate and checkpoint epoch by epoch until the last, the planned steps or an early stop;
        appends each epoch's row to ``history`` and returns the step reached."""
        cfg, dist = self.cfg, self.dist
        epoch = start_epoch
        try:
            for epoch in range(start_epoch, num_epochs):
                row, step = self._train_epoch(epoch, num_epochs, step)
                dist.broadcast_buffers(self.model)  # rank 0's BatchNorm statistics: one model everywhere
                if self.ema is not None:
                    dist.broadcast_buffers(self.ema.module)
                self._check_weights(epoch, step)
                is_last = epoch == num_epochs - 1 or step >= self.planned_steps
                best = False
                if self.val_loader is not None and (is_last or (epoch + 1) % cfg.eval_every == 0):
                    val = self._evaluate(self.val_loader)
                    if not math.isfinite(val.loss):
                        raise self._diverged(f"the validation loss became {val.loss}", epoch, step)
                    row.update(val_loss=val.loss, val_acc=val.top1, val_top5=val.top5, val_images=val.n)
                    best_acc = max(best_acc, val.top1)
                history.append(row)
                best = "val_acc" in row and _best_row(history) is row
                if dist.is_main:
                    self._save(epoch, step, best_acc, history, best)
                dist.barrier()  # the checkpoint is whole before any rank goes on (or stops)
                self._log_epoch(row, num_epochs)
                if step >= self.planned_steps:
                    break
                if (
                    (waited := _validations_since_best(history)) is not None
                    and cfg.early_stop
                    and waited >= cfg.early_stop
                ):
                    log.info(
                        "early stop after epoch %d: no better validation accuracy in %d validations (best %.2f%%)",
                        epoch + 1,
                        waited,
                        100 * best_acc,
                    )
                    break
        except KeyboardInterrupt:
            log.warning(
                "interrupted in epoch %d; the checkpoint of the last finished epoch is in %s; "
                "continue with: imgcls train --resume %s",
                epoch + 1,
                self.run_dir,
                self.run_dir,
            )
            raise
        return step

    def _finish(self, step: int, history: list[dict[str, Any]]) -> TrainResult:
        """The test split, once: on the weights the run reports (the best on validation, else the last)."""
        weights = "best" if (self.run_dir / ckpt.WEIGHTS_BEST).is_file() else "last"
        test = self._evaluate(self.test_loader, self._reported_model(weights))
        best_row = _best_row(history)
        if best_row is not None and "val_acc" not in best_row:  # a run from before validation, resumed
            best_row = None
        # the rows of the epochs done, resumed ones included, in order
        train_seconds = sum(r["epoch_seconds"] for r in history)
        images_seen = sum(r["images"] for r in history)
        total = time.perf_counter() - self.t_start
        result = TrainResult(
            run_dir=self.run_dir,
            test_acc=test.top1,
            test_top5=test.top5,
            val_acc=best_row["val_acc"] if best_row else None,
            best_epoch=best_row["epoch"] if best_row else None,
            weights=weights,
            epochs=len(history),
            steps=step,
            train_seconds=train_seconds,
            total_seconds=total,
            images_per_sec=images_seen / max(train_seconds, 1e-9),
            history=history,
            eval=test,
        )
        if self.dist.is_main:
            self._write_result(result, test)
        chosen = ""
        if best_row:
            chosen = f" (epoch {result.best_epoch}, validation {100 * result.val_acc:.2f}%"
            _, peak = _validated(history)
            if (
                peak is not None and best_row["val_acc"] < peak["val_acc"]
            ):  # a later epoch within two standard errors (_best_row)
                chosen += (
                    f"; epoch {peak['epoch']}'s {100 * peak['val_acc']:.2f}% is within two standard errors, "
                    f"{100 * _val_margin(peak):.2f} points"
                )
            chosen += ")"
        log.info(
            "test accuracy %.2f%% (top-5 %.2f%%) of the %s weights%s",
            100 * result.test_acc,
            100 * result.test_top5,
            weights,
            chosen,
        )
        return result

    def _write_result(self, result: TrainResult, test: EvalResult) -> None:
        ckpt.atomic_write_json(
            self.run_dir / "result.json",
            {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in ((f.name, getattr(result, f.name)) for f in fields(result))
                if k not in ("history", "eval")
            }
            | {"dataset": self.info.name, "model": self.cfg.model, "per_class": test.to_dict()["per_class"]},
        )

    def _reported_model(self, weights: str) -> nn.Module:
        """The model whose test accuracy the run reports: the best on validation, read back from its file."""
        model = self._eval_model()
        if weights == "last":
            return model
        best = copy.deepcopy(model)
        best.load_state_dict(load_state_dict_file(self.run_dir / ckpt.WEIGHTS_BEST))
        return best

    def _write_skipped(self) -> None:
        atomic_write_text(self.run_dir / "skipped.txt", "".join(f"{p}\n" for p in self._skipped))
        log.warning(
            "left out %d unreadable image(s) (--skip-bad); they are listed in %s",
            len(self._skipped),
            self.run_dir / "skipped.txt",
        )

    def _loss(
        self, out: torch.Tensor | AuxOutputs, y: torch.Tensor, reduction: str = "mean"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss (``reduction="none"``: each image's) and the logits."""
        kw = dict(label_smoothing=self.cfg.label_smoothing, weight=self.class_weight, reduction=reduction)
        if isinstance(out, AuxOutputs):
            loss = F.cross_entropy(out.logits, y, **kw)
            for aux in out.aux:  # GoogLeNet: auxiliary classifiers weighted 0.3 (Szegedy et al. 2014, sec. 5)
                loss = loss + out.aux_weight * F.cross_entropy(aux, y, **kw)
            return loss, out.logits
        return F.cross_entropy(out, y, **kw), out

    def _train_epoch(self, epoch: int, num_epochs: int, step: int) -> tuple[dict[str, Any], int]:
        from tqdm.auto import tqdm

        cfg, opt, dist = self.cfg, self.optimizer, self.dist
        self.step_model.train()
        if cfg.freeze_backbone:
            self._freeze_for(epoch)
        model = self.step_model  # (re-wrapped by _freeze_for when the parameters that train change)
        self.train_loader.set_epoch(epoch)
        if self.pruner is not None:
            self._plan_epoch(epoch, num_epochs, step)
        total_steps = self.planned_steps
        accum = cfg.accum_steps
        # Each epoch starts from clean gradients, and the batches past the last full group of accum_steps
        # are not drawn: their gradients would never reach an optimizer step (nor leak into the next epoch's).
        opt.zero_grad(set_to_none=True)
        usable = len(self.train_loader) // accum * accum
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        n_images, n_batches = 0, 0
        # A bar redraws itself with carriage returns: right on a terminal, hundreds of frames in a log file.
        # Elsewhere, plain lines every log_every steps (as timm's train.py does) and the per-epoch line.
        use_bar = cfg.progress and dist.is_main and _bar_displays(tqdm)
        log_every = 0 if use_bar else cfg.log_every
        bar = tqdm(
            total=usable,
            desc=f"epoch {epoch + 1}/{num_epochs}",
            leave=False,
            disable=not use_bar,
            dynamic_ncols=True,
            unit="batch",
        )
        size = cfg.train_sizes[min(epoch, len(cfg.train_sizes) - 1)] if cfg.train_sizes else None
        t0 = time.perf_counter()
        for i, batch in enumerate(self.train_loader):
            if i >= usable:
                break
            x, y = batch[0], batch[1]
            if size is not None and size != x.shape[-1]:  # progressive resizing: a smaller early epoch
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            stepped = (i + 1) % accum == 0
            # Across processes, gradients are averaged on the backward pass of the batch that steps only.
            no_sync = getattr(model, "no_sync", None) if dist.enabled and not stepped else None
            with no_sync() if no_sync is not None else contextlib.nullcontext():
                with autocast(self.device, self.amp_dtype):
                    out = model(x)
                    if self.pruner is None:
                        loss, logits = self._loss(out, y)
                    else:  # per-image losses: the pruner's scores, weighted as its plan says (a plain mean
                        # over the batch, also with --class-weights, whose mean divides by the weights' sum)
                        losses, logits = self._loss(out, y, reduction="none")
                        self.pruner.record(batch[2], losses)
                        loss = (losses * self.pruner.weights[batch[2].cpu()].to(losses.device)).mean()
                self.scaler.scale(loss / accum if accum > 1 else loss).backward()
            n_batches += 1
            n_images += x.shape[0]
            loss_sum += loss.detach().float()
            target = y if y.ndim == 1 else y.argmax(1)  # mixup / cutmix: the dominant label
            correct += (logits.detach().argmax(1) == target).sum()
            if stepped:
                if cfg.grad_clip:
                    self.scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.scaler.step(opt)
                self.scaler.update()
                if self.post_step is not None:
                    self.post_step(self.model)
                if cfg.filter_rms_limit:  # Zeiler and Fergus 2013, sec. 3, for any model
                    renormalize_filters_(self.model, cfg.filter_rms_limit)
                opt.zero_grad(set_to_none=True)
                self.schedule.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                step += 1
            if n_batches % _NAN_CHECK_EVERY == 0:
                self._check_finite(loss_sum, epoch, step)
                if use_bar:
                    bar.set_postfix(
                        loss=f"{float(loss_sum) / n_batches:.3f}",
                        acc=f"{100 * float(correct) / n_images:.1f}",
                        lr=f"{opt.param_groups[0]['lr']:.3g}",
                        img_s=f"{dist.world_size * n_images / (time.perf_counter() - t0):.0f}",
                        refresh=False,
                    )
            if stepped and log_every and step % log_every == 0:
                # loss and accuracy: means over this epoch's batches so far (reading them syncs the device)
                log.info(
                    "epoch %d/%d step %d/%d: train loss %.4f acc %.2f%% | lr %.3g | %.0f img/s",
                    epoch + 1,
                    num_epochs,
                    step,
                    total_steps,
                    float(loss_sum) / n_batches,
                    100 * float(correct) / n_images,
                    opt.param_groups[0]["lr"],
                    dist.world_size * n_images / max(time.perf_counter() - t0, 1e-9),  # all processes
                )
            bar.update(1)
            if step >= total_steps and stepped:
                break
        bar.close()
        self._check_finite(loss_sum, epoch, step)
        if self.pruner is not None:
            self.pruner.end_epoch(dist.all_reduce_sum if dist.enabled else None)
        seconds = time.perf_counter() - t0
        if dist.enabled:  # the epoch's figures over all processes (the same on every rank)
            totals = dist.all_reduce_sum(
                torch.stack(
                    [loss_sum.double(), correct.double(), torch.tensor(float(n_images), device=self.device)]
                )
            )
            loss_sum, correct, n_images = totals[0], totals[1], int(totals[2])
            n_batches *= dist.world_size
        return {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": float(loss_sum) / max(n_batches, 1),
            "train_acc": float(correct) / max(n_images, 1),
            "lr": opt.param_groups[0]["lr"],
            "epoch_seconds": seconds,
            "images": n_images,
            "images_per_sec": n_images / max(seconds, 1e-9),
        }, step

    def _check_finite(self, loss_sum: torch.Tensor, epoch: int, step: int) -> None:
        loss_sum = self.dist.all_reduce_sum(loss_sum)  # every rank stops together, or none
        if not torch.isfinite(loss_sum):
            raise self._diverged(f"the training loss became {float(loss_sum)}", epoch, step)

    def _check_weights(self, epoch: int, step: int) -> None:
        """Refuse to go on (and so to save) with a NaN or infinite parameter or buffer, EMA's included."""
        models = [self.model] + ([self.ema.module] if self.ema is not None else [])
        for model in models:
            if (name := _first_nonfinite(model)) is not None:
                raise self._diverged(f"the weights became NaN or infinite ({name})", epoch, step)

    def _diverged(self, what: str, epoch: int, step: int) -> TrainingDivergedError:
        """The error for a run that diverged in ``epoch`` (0-based): nothing of that epoch was saved."""
        last = (
            f"the checkpoint of epoch {epoch}, in {self.run_dir}, is the last finite one"
            if epoch > 0
            else "no checkpoint was written"
        )
        return TrainingDivergedError(
            f"{what} in epoch {epoch + 1} (step {step}); the run stopped and {last}; "
            "lower --lr or set --grad-clip 1.0"
        )

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _evaluate(self, loader: Any, model: nn.Module | None = None) -> EvalResult:
        return evaluate(
            model if model is not None else self._eval_model(),
            loader,
            self.info.num_classes,
            classes=self.info.classes,
            amp_dtype=self.amp_dtype,
            tta_flip=self.cfg.tta_flip,
            reduce=self.dist.all_reduce_sum if self.dist.enabled else None,
        )

    def _log_epoch(self, row: dict[str, Any], num_epochs: int) -> None:
        val = (
            f" | val acc {100 * row['val_acc']:.2f}% top-5 {100 * row['val_top5']:.2f}%"
            if "val_acc" in row
            else ""
        )
        log.info(
            "epoch %d/%d: train loss %.4f acc %.2f%%%s | lr %.3g | %.0f img/s | %.1f s",
            row["epoch"],
            num_epochs,
            row["train_loss"],
            100 * row["train_acc"],
            val,
            row["lr"],
            row["images_per_sec"],
            row["epoch_seconds"],
        )

    # ------------------------------------------------------------------------------------------ checkpoints
    def _save(
        self, epoch: int, step: int, best_acc: float, history: list[dict[str, Any]], best: bool
    ) -> None:
        run_dir, eval_model = self.run_dir, self._eval_model()
        meta = {"epoch": str(epoch + 1), "model": self.cfg.model}
        ckpt.save_weights(eval_model, run_dir / ckpt.WEIGHTS_LAST, meta)
        if best:
            ckpt.save_weights(eval_model, run_dir / ckpt.WEIGHTS_BEST, meta)
        state = {
            "epoch": epoch + 1,  # epochs completed
            "step": step,
            "best_acc": best_acc,
            "history": history,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "pruning": self.pruner.state_dict() if self.pruner is not None else None,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "config": self.cfg.to_dict(),
        }
        ckpt.save_training_state(run_dir / ckpt.STATE, state)
        self._write_metrics(history)

    def _restore(self, path: Path) -> tuple[int, int, float, list[dict[str, Any]]]:
        if not path.is_file():
            raise ConfigError(
                f"cannot resume '{path.parent}': no {ckpt.STATE} (the first epoch never finished); start it again"
            )
        state = ckpt.load_training_state(path)
        try:
            return self._load_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise CheckpointError(
                f"training state '{path}' does not fit this run ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); the run cannot be resumed"
            ) from None

    def _load_state(self, state: dict[str, Any]) -> tuple[int, int, float, list[dict[str, Any]]]:
        progress = (state["epoch"], state["step"], state["best_acc"], state["history"])
        if not _is_progress(*progress):
            raise ValueError("epoch, step, best_acc or history is malformed")
        self.model.load_state_dict(ckpt.strip_module_prefix(state["model"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if self.pruner is not None and state.get("pruning") is not None:
            self.pruner.load_state_dict(state["pruning"])
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        return progress

    def _write_metrics(self, history: list[dict[str, Any]]) -> None:
        cols = [
            "epoch",
            "step",
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
            "val_top5",
            "lr",
            "epoch_seconds",
            "images_per_sec",
        ]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(history)
        atomic_write_text(self.run_dir / "metrics.csv", buf.getvalue())
        title = f"{self.run_dir.name}: {self.cfg.model} on {self.info.name}"
        _plot_curves(history, self.run_dir / "curves.png", title)


# What every row of a run's history holds (fit, _write_metrics and _plot_curves read them).
_HISTORY_KEYS = ("epoch", "step", "train_loss", "train_acc", "lr", "epoch_seconds", "images")


def _is_progress(epoch: Any, step: Any, best_acc: Any, history: Any) -> bool:
    """Whether a saved state's counters and history have the types and keys the trainer reads."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    return (
        all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (epoch, step))
        and number(best_acc)
        and isinstance(history, list)
        and all(isinstance(r, dict) and all(number(r.get(k)) for k in _HISTORY_KEYS) for r in history)
    )


def _first_nonfinite(model: nn.Module) -> str | None:
    """The name of the first floating-point parameter or buffer of ``model`` holding a NaN or inf, if any."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def _bar_displays(bar_cls: type) -> bool:
    """Whether a progress bar of ``bar_cls`` redraws in place: stderr is a terminal, or it is a notebook widget."""
    if any(c.__module__ == "tqdm.notebook" for c in bar_cls.__mro__):  # tqdm.auto chose Jupyter's widget
        return True
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError, OSError):  # no stderr (pythonw), a closed one, or one without isatty
        return False


# The splits a history row may hold metrics of ("<split>_loss", "<split>_acc"), in the order they are drawn.
_SPLITS = ("train", "val", "test")
_SPLIT_STYLE = {"train": "o-", "val": "s-", "test": "D-"}


def _validated(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The rows of ``history`` with a validation accuracy, and the first of them with the highest (None: none)."""
    rows = [r for r in history if "val_acc" in r]
    return rows, max(rows, key=lambda r: r["val_acc"]) if rows else None  # max keeps the first of equals


def _validations_since_best(history: list[dict[str, Any]]) -> int | None:
    """How many validations came after the best one (None before the first): what early stopping counts."""
    rows, peak = _validated(history)
    return None if peak is None else len(rows) - 1 - rows.index(peak)  # later ties do not reset it


def _refuse_existing_run(run_dir: Path) -> None:
    """A ConfigError where ``run_dir`` already holds a run (its training state): a new run never overwrites one."""
    if (run_dir / ckpt.STATE).exists():
        raise ConfigError(
            f"run directory '{run_dir}' already holds a run: pass --resume {run_dir} or another --name"
        )


def _val_margin(row: dict[str, Any]) -> float:
    """Two standard errors of the row's validation accuracy, ``2 sqrt(p (1 - p) / n)`` over its ``val_images``
    images (0 for rows of runs from before it was recorded): differences a validation split cannot resolve."""
    n, p = row.get("val_images"), row["val_acc"]
    return 2 * math.sqrt(p * (1 - p) / n) if isinstance(n, int) and n > 0 else 0.0


def _best_row(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row ``best.safetensors`` comes from: the latest validated epoch within two standard errors of the
    highest validation accuracy (else the first with the highest test accuracy, in a run from before
    validation), if any.

    A rule in the spirit of the one-standard-error rule (Hastie, Tibshirani & Friedman, *The Elements of
    Statistical Learning*, sec. 7.10): an earlier epoch wins only where the validation split can tell that it
    is better. Two standard errors, not one, because the highest of many validations is itself lifted by
    their noise. On small data the split is small (2,000 images: 180 held out, one standard error about 2.7
    points), and the highest of 30 noisy validations is often an early epoch: on the 2,000-image
    Fashion-MNIST folder of benchmarks/own_images.py the highest-validation epochs (11th to 32nd of 30 or 45)
    scored 0.04-3.0 points (1.2 on average) below the last epoch on 10,000 test images, in all 14 runs
    measured; one standard error still chose an epoch other than the last in 9 of 22 runs (twice the 19th
    of 30, once measured 1.2 points below the last on those test images), two in none. With a schedule that
    anneals the learning rate the last epoch is usually the one to keep; a large split (Fashion-MNIST's
    6,000: 0.6 points) still picks out a clearly better earlier one.
    """
    rows, peak = _validated(history)
    if peak is not None:
        floor = peak["val_acc"] - _val_margin(peak)
        return [r for r in rows if r["val_acc"] >= floor][-1]
    rows = [r for r in history if "test_acc" in r]
    return max(rows, key=lambda r: r["test_acc"]) if rows else None  # max keeps the first of equals


def plot_curves(history: list[dict[str, Any]], title: str = "") -> Figure:
    """Loss, top-1 accuracy and learning rate per epoch of a run's ``history``, the best epoch marked.

    Each curve is named by the split its rows hold (train, val, test); every point has a marker, so a run of
    one epoch shows its numbers. The figure is not attached to pyplot: save it with ``fig.savefig``.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(14, 4.2))
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    for split in _SPLITS:
        rows = [r for r in history if f"{split}_loss" in r]
        if not rows:
            continue
        epochs = [r["epoch"] for r in rows]
        style = dict(label=split, markersize=4)
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in rows], _SPLIT_STYLE[split], **style)
        ax_acc.plot(epochs, [100 * r[f"{split}_acc"] for r in rows], _SPLIT_STYLE[split], **style)
    ax_lr.plot([r["epoch"] for r in history], [r["lr"] for r in history], "o-", markersize=4, label="lr")
    if (best := _best_row(history)) is not None:
        split = "val" if "val_acc" in best else "test"
        label = f"best: epoch {best['epoch']} ({split} {100 * best[f'{split}_acc']:.2f}%)"
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.axvline(
                best["epoch"], color="0.5", linestyle="--", linewidth=1, label=label if ax is ax_acc else None
            )
        ax_acc.plot(best["epoch"], 100 * best[f"{split}_acc"], "*", color="gold", markersize=14, zorder=3)
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("top-1 accuracy (%)")
    ax_lr.set_ylabel("learning rate (end of epoch)")
    epochs = sorted({r["epoch"] for r in history})
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:  # one epoch: one tick, not fractions of an epoch around it
            ax.set_xticks(epochs)
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        ax.grid(alpha=0.3)
    ax_loss.legend()
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Write :func:`plot_curves` of ``history`` to ``path`` as a PNG, atomically."""
    fig = plot_curves(history, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
