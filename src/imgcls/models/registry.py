"""The model registry: one :class:`ModelSpec` per variant, filled by the family files from their tables.

A family file declares its variants as a table of frozen dataclass configs (one row per row of the paper's
table) and registers each row with :func:`register_model`. The spec carries the reference figures (parameter
count and where it comes from, GFLOPs, accuracy) so tests can check them, and the facts a test or the trainer
needs (native and smallest input size, how to adapt the model to 28x28 / 32x32 images).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from imgcls.errors import ConfigError, unknown_name

__all__ = [
    "AuxOutputs",
    "ModelSpec",
    "count_params",
    "create_model",
    "get_model_spec",
    "list_models",
    "register_model",
    "unregister_model",
]


class Ref(NamedTuple):
    """Reference figures of one variant, stored beside its config row: parameters at 1000 classes,
    multiply-adds at the native input size (G), ImageNet top-1 (%), and where they come from."""

    num_params: int
    gmacs: float | None
    top1: float | None
    source: str


class AuxOutputs(NamedTuple):
    """What a model with auxiliary classifiers (GoogLeNet) returns in training mode.

    ``logits`` is the main output; ``aux`` holds the auxiliary logits, each trained with ``aux_weight`` times
    the main loss's criterion (0.3 in the GoogLeNet paper). In eval mode such models return plain logits.
    """

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]
    aux_weight: float = 0.3


@dataclass(frozen=True)
class ModelSpec:
    """One registered variant.

    Attributes:
        name: registry name, e.g. ``"resnet50"``.
        family: family module name, e.g. ``"resnet"``.
        builder: callable ``builder(num_classes=, in_chans=, **kwargs) -> nn.Module``.
        kwargs: fixed keyword arguments of this variant (usually its config row).
        num_params: reference trainable-parameter count at ``ref_kwargs`` (None when no figure is known).
        ref_kwargs: arguments the reference count is taken at (default 1000 classes, 3 channels).
        source: where the reference figure comes from (paper table, torchvision, ...).
        input_size: native (C, H, W).
        test_input_size: smallest (C, H, W) the registry test runs forward/backward at.
        test_kwargs: extra kwargs for the registry test's forward pass (e.g. ``{"small_input": True}``).
        small_input_kwargs: kwargs that adapt the model to <= 64 px images (CIFAR-style stem); None when the
            model is natively small or has no such form.
        gmacs: reference multiply-adds (G, not FLOPs: one multiply-add is 2 FLOPs) at ``input_size``, when
            published.
        top1: reference ImageNet (or stated dataset) top-1 accuracy in percent, when published.
        tolerance: relative tolerance for ``forward_head(forward_features(x)) == forward(x)``.
        cam_layer: the module name (as in ``named_modules()``; a negative index such as ``blocks.-1`` counts
            from the end, whatever the depth) whose output Grad-CAM and feature maps use by default: the last
            layer that still has a spatial layout and whose gradient reaches the logits (``imgcls.explain``);
            None where the model has none (an MLP).
        post_step: called as ``post_step(model)`` after each optimiser step, for a training-time rule the
            paper applies to the weights (ZFNet's filter renormalisation); None for most models.
    """

    name: str
    family: str
    builder: Callable[..., nn.Module]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_params: int | None = None
    ref_kwargs: Mapping[str, Any] = field(default_factory=lambda: {"num_classes": 1000})
    source: str = ""
    input_size: tuple[int, int, int] = (3, 224, 224)
    test_input_size: tuple[int, int, int] | None = None
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)
    small_input_kwargs: Mapping[str, Any] | None = None
    gmacs: float | None = None
    top1: float | None = None
    tolerance: float = 1e-5
    cam_layer: str | None = None
    post_step: Callable[[nn.Module], None] | None = None

    @property
    def smallest_input(self) -> tuple[int, int, int]:
        return self.test_input_size or self.input_size


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry; names are unique."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model '{spec.name}' is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Remove ``name`` (a network registered for a while, e.g. by an experiment); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def _ensure_loaded() -> None:
    # Importing the package registers every family (imgcls/models/__init__.py imports them all).
    import imgcls.models  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a shell-style ``pattern`` (``"resnet*"``).

    A pattern without wildcards matches as a substring (``"vit"`` finds every ViT).
    """
    _ensure_loaded()
    if not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; an unknown name lists close matches."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_name("model", name, _REGISTRY, "run 'imgcls models' to list them") from None


def create_model(
    name: str,
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    small_input: bool | None = None,
    image_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (see :func:`list_models`).
        num_classes: classifier outputs.
        in_chans: input channels (1 for grayscale, no RGB conversion needed).
        small_input: force (True) or forbid (False) the model's small-image form; by default it is used when
            ``image_size`` is given and at most 64 pixels and the model has such a form.
        image_size: the input side the model will see, used to pick the small-image form.
        **kwargs: variant arguments overriding the registered ones (e.g. ``drop_path_rate=0.1``).
    """
    spec = get_model_spec(name)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if in_chans < 1:
        raise ConfigError(f"in_chans must be >= 1, got {in_chans}")
    args = dict(spec.kwargs)
    if small_input is None:
        small_input = image_size is not None and image_size <= 64
    if small_input and spec.small_input_kwargs is not None:
        args.update(spec.small_input_kwargs)
    args.update(kwargs)
    try:
        return spec.builder(num_classes=num_classes, in_chans=in_chans, **args)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise ConfigError(f"model '{name}' does not take that argument: {e}") from None
        raise


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; shared parameters count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def spec_param_count(spec: ModelSpec) -> int:
    """Count ``spec``'s parameters at its reference arguments on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = create_model(spec.name, **dict(spec.ref_kwargs))
    return count_params(model)
