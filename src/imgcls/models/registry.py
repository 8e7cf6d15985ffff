"""The model registry: one :class:`ModelSpec` per variant, filled by the family files from their tables.

A family file declares its variants as a table of :class:`Variant` rows (a frozen config dataclass plus the
row's reference figures; one row per row of the paper's table) and registers the table with one call to
:func:`register_family`. The spec carries the reference figures (parameter count and where it comes from,
multiply-adds, accuracy) so tests can check them, and the facts a test or the trainer needs (native and
smallest input size, how to adapt the model to 28x28 / 32x32 images).

:func:`create_model` builds a variant. Its keyword arguments follow one rule: a name that is a field of the
variant's config replaces that field (``create_model("resnet18", groups=2)``, ``create_model("vit_base_patch16_224",
depth=2)``); any other name goes to the model's constructor (``drop_path_rate=0.1``); a name that is neither
is a :class:`~imgcls.errors.ConfigError` listing the names that are.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from imgcls.errors import ConfigError, unknown_name

__all__ = [
    "AuxOutputs",
    "ModelSpec",
    "Variant",
    "count_params",
    "create_model",
    "get_model_spec",
    "list_models",
    "register_family",
    "register_model",
    "unregister_model",
]

# A variant whose native input is at most this side is its own small-image form (see register_family), and
# create_model picks a family's small-image form for images up to this side.
SMALL_IMAGE_SIDE = 64


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
        kwargs: fixed keyword arguments of this variant (usually its config row, as ``cfg``).
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
        gmacs_rtol: relative tolerance of ``gmacs`` against the multiply-adds counted on the model (wider
            where the reference is a paper's rounded figure).
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
    gmacs_rtol: float = 0.01

    @property
    def smallest_input(self) -> tuple[int, int, int]:
        return self.test_input_size or self.input_size


@dataclass(frozen=True)
class Variant:
    """One row of a family's variant table: its config, its reference figures, and the facts its tests need
    where the row differs from the rest of its family (given once to :func:`register_family`).

    Attributes:
        cfg: the family's frozen config dataclass; the model is built as ``model(cfg, num_classes=, ...)``.
        num_params: reference trainable-parameter count, at ``num_classes`` classes. Where ``source`` says
            "computed" or "counted" and gives no published count to compare it with, the number came from this
            code: a regression pin, which catches a change but does not show the model is right.
        source: where the reference figures come from.
        gmacs: multiply-adds (G, one multiply-add = 2 FLOPs) at the native input size, when known.
        top1: top-1 accuracy in percent, when published (ImageNet unless ``source`` names the dataset).
        paper_params_m: the paper's printed parameter count in millions, where it is rounded (or differs) and
            ``num_params`` is our exact count.
        gmacs_rtol: relative tolerance of ``gmacs`` against our count; None: the family's (0.01 unless the
            family says otherwise). Wider only for a figure the paper rounds (say so where it is set).
        input_size: native side in pixels (square); None: the family's.
        num_classes: the classes ``num_params`` is counted at; None: the family's.
        test_size: the side the registry test runs forward/backward at; None: the family's.
    """

    cfg: Any
    num_params: int
    source: str
    gmacs: float | None = None
    top1: float | None = None
    paper_params_m: float | None = None
    gmacs_rtol: float | None = None
    input_size: int | None = None
    num_classes: int | None = None
    test_size: int | None = None


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


def register_family(
    family: str,
    model: Callable[..., nn.Module],
    variants: Mapping[str, Variant],
    *,
    cam_layer: str | None,
    input_size: tuple[int, int, int] = (3, 224, 224),
    ref_kwargs: Mapping[str, Any] | None = None,
    test_input_size: tuple[int, int, int] | None = None,
    test_kwargs: Mapping[str, Any] | None = None,
    small_input_kwargs: Mapping[str, Any] | None = None,
    gmacs_rtol: float = 0.01,
    **spec_fields: Any,
) -> None:
    """Register every row of a family's table: ``model(cfg, num_classes=, in_chans=, **kwargs)`` builds it.

    The keyword arguments are the family's facts, as :class:`ModelSpec` names them (``spec_fields``: any
    other field of it, the same for every row). A row's ``input_size``, ``num_classes``, ``test_size`` and
    ``gmacs_rtol`` override the family's side, reference classes, test side and multiply-add tolerance. A row
    whose native side is at most 64 px is its own small-image form: it gets no ``small_input_kwargs`` and no
    ``test_kwargs`` (those adapt the large rows of the family to small images).
    """
    ref_kwargs = dict(ref_kwargs or {"num_classes": 1000})
    for name, row in variants.items():
        chans, side = input_size[0], row.input_size or input_size[1]
        test_side = row.test_size or (test_input_size[1] if test_input_size else None)
        native_small = side <= SMALL_IMAGE_SIDE
        register_model(
            ModelSpec(
                name=name,
                family=family,
                builder=model,
                kwargs={"cfg": row.cfg},
                num_params=row.num_params,
                ref_kwargs=ref_kwargs
                if row.num_classes is None
                else {**ref_kwargs, "num_classes": row.num_classes},
                source=row.source,
                input_size=(chans, side, side),
                test_input_size=(chans, test_side, test_side) if test_side else None,
                test_kwargs={} if native_small else dict(test_kwargs or {}),
                small_input_kwargs=None if native_small else small_input_kwargs,
                gmacs=row.gmacs,
                top1=row.top1,
                cam_layer=cam_layer,
                gmacs_rtol=gmacs_rtol if row.gmacs_rtol is None else row.gmacs_rtol,
                **spec_fields,
            )
        )


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
        **kwargs: a name that is a field of the variant's config replaces that field (``groups=2``,
            ``depth=2``; a list becomes a tuple, as JSON gives them); any other goes to the model's
            constructor (``drop_path_rate=0.1``). A name that is neither raises :class:`ConfigError`.
    """
    spec = get_model_spec(name)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if in_chans < 1:
        raise ConfigError(f"in_chans must be >= 1, got {in_chans}")
    if small_input is None:
        small_input = image_size is not None and image_size <= SMALL_IMAGE_SIDE
    args = dict(spec.kwargs)
    overrides = {**(spec.small_input_kwargs or {}), **kwargs} if small_input else dict(kwargs)
    cfg = args.get("cfg")
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        names = {f.name for f in dataclasses.fields(cfg)}
        fields = {k: _as_tuples(overrides.pop(k)) for k in list(overrides) if k in names}
        args["cfg"] = dataclasses.replace(cfg, **fields)
    _check_constructor_args(name, spec, overrides)
    args.update(overrides)
    try:
        return spec.builder(num_classes=num_classes, in_chans=in_chans, **args)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise ConfigError(f"model '{name}' does not take that argument: {e}") from None
        raise


def _as_tuples(value: Any) -> Any:
    """Lists (as JSON and ``--model-kwargs`` give them) as tuples, so a frozen config stays hashable."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def _check_constructor_args(name: str, spec: ModelSpec, kwargs: Mapping[str, Any]) -> None:
    """Refuse a keyword that is neither a config field nor a constructor argument, naming those that are."""
    try:
        params = inspect.signature(spec.builder).parameters
    except (TypeError, ValueError):  # a builder without a readable signature: let it judge its arguments
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(k for k in kwargs if k not in params)
    if not unknown:
        return
    cfg = spec.kwargs.get("cfg")
    cfg_fields = [f.name for f in dataclasses.fields(cfg)] if dataclasses.is_dataclass(cfg) else []
    ctor = [k for k in params if k not in ("cfg", "num_classes", "in_chans")]
    fields = f"its config fields are {', '.join(cfg_fields)}" if cfg_fields else "it has no config"
    others = f"its other arguments are {', '.join(ctor)}" if ctor else "it takes no other argument"
    raise ConfigError(f"model '{name}' has no argument {', '.join(map(repr, unknown))}: {fields}; {others}")


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; shared parameters count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def spec_param_count(spec: ModelSpec) -> int:
    """Count ``spec``'s parameters at its reference arguments on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = create_model(spec.name, **dict(spec.ref_kwargs))
    return count_params(model)
