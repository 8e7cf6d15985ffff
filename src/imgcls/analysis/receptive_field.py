"""Receptive fields: the closed-form recurrence, followed through a model's operations, and a measurement.

The recurrence (Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural Networks",
Distill 2019; Dumoulin and Visin, arXiv:1603.07285): a layer with kernel ``k``, stride ``s``, padding ``p`` and
dilation ``d`` after a unit spacing (jump) ``j`` on the input gives

    r' = r + (k - 1) * d * j        j' = j * s        start' = start + ((k - 1) * d / 2 - p) * j

Here each axis is kept as the box of output unit 0 in input pixels, ``[lo, hi]`` (pixel 0's centre is 0),
and the jump: unit ``i`` sees ``[lo + i * j, hi + i * j]``, its field ``r = hi - lo + 1`` and its centre
(the "start" of the unit grid) ``(lo + hi) / 2``. Where branches meet (a residual sum, an Inception or DenseNet
concatenation) the boxes are united, so the field is that of the largest path, and exactly the set of pixels a
unit's value can depend on. A field may reach past the image: padding pixels count, as in the papers.

:func:`FieldTracker` follows the fields through the aten operations of a forward pass (convolutions, pooling,
padding, spatial reductions, and every operation that keeps the image grid); operations that leave the grid
(a ViT's patch tokens, Swin's windows) end the field, which is then unknown (None). After a global pooling or
a flatten the field covers every unit of the map. :func:`gradient_field` measures a field: the extent of the
non-zero input gradient of one unit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from imgcls.errors import ConfigError

__all__ = ["AxisField", "Field", "FieldTracker", "gradient_field"]

aten = torch.ops.aten


@dataclass(frozen=True)
class AxisField:
    """One axis: unit 0 sees input pixels ``lo..hi`` (inclusive), and units are ``jump`` pixels apart."""

    lo: float
    hi: float
    jump: float

    @property
    def size(self) -> float:
        """The receptive field r (pixels)."""
        return self.hi - self.lo + 1

    @property
    def start(self) -> float:
        """Centre of unit 0's field in input pixels (pixel 0's centre is 0)."""
        return (self.lo + self.hi) / 2

    def window(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> AxisField:
        """After a sliding window (convolution or pooling) over this axis."""
        return AxisField(
            self.lo - padding * self.jump,
            self.hi + ((kernel - 1) * dilation - padding) * self.jump,
            self.jump * stride,
        )

    def shift(self, units: int) -> AxisField:
        """After padding ``units`` units before the first one."""
        return AxisField(self.lo - units * self.jump, self.hi - units * self.jump, self.jump)

    def unit(self, i: int) -> tuple[float, float]:
        """The box of unit ``i``."""
        return self.lo + i * self.jump, self.hi + i * self.jump


@dataclass(frozen=True)
class Field:
    """The receptive field of a feature map's units along height and width.

    ``grid`` is False once the map was pooled or flattened to one unit per image (the field is then that of
    the whole map, and the tensor need no longer have spatial dimensions).
    """

    h: AxisField
    w: AxisField
    grid: bool = True

    @staticmethod
    def pixels() -> Field:
        """The input image: each unit is one pixel."""
        return Field(AxisField(0, 0, 1), AxisField(0, 0, 1))

    @property
    def size(self) -> tuple[float, float]:
        return self.h.size, self.w.size

    @property
    def jump(self) -> tuple[float, float]:
        return self.h.jump, self.w.jump

    @property
    def start(self) -> tuple[float, float]:
        return self.h.start, self.w.start

    def window(self, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int], dilation=(1, 1)):
        return Field(
            self.h.window(kernel[0], stride[0], padding[0], dilation[0]),
            self.w.window(kernel[1], stride[1], padding[1], dilation[1]),
        )

    def whole(self, height: int, width: int) -> Field:
        """After pooling or flattening all ``height x width`` units into one."""
        f = self.window((height, width), (height, width), (0, 0))
        return Field(f.h, f.w, grid=False)

    def union(self, other: Field) -> Field:
        """Where two paths meet: the box of both (the jump of a full-size map wins over a broadcast one's)."""

        def axis(a: AxisField, b: AxisField) -> AxisField:
            return AxisField(min(a.lo, b.lo), max(a.hi, b.hi), a.jump)

        first, second = (self, other) if self.grid or not other.grid else (other, self)
        return Field(axis(first.h, second.h), axis(first.w, second.w), first.grid)


def _pair(v: Any, default: Sequence[int] | None = None) -> tuple[int, int]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        assert default is not None
        return int(default[0]), int(default[1])
    if isinstance(v, int):
        return v, v
    v = [int(x) for x in v]
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


# Operations whose output has the input's grid, unit for unit, whatever their other arguments: the
# default rule (below) covers them once shapes agree; these need more than the shapes to tell.
_POOLS = {
    aten.max_pool2d.default,
    aten.max_pool2d_with_indices.default,
    aten.avg_pool2d.default,
}
_ADAPTIVE = {
    aten._adaptive_avg_pool2d.default,
    aten.adaptive_max_pool2d.default,
    aten.adaptive_avg_pool2d.default,
}
_RESHAPES = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
_PERMUTES = {aten.permute.default, aten.transpose.int, aten.t.default}
_REDUCTIONS = {aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default}
_PADS = {
    aten.constant_pad_nd.default,
    aten.reflection_pad2d.default,
    aten.replication_pad2d.default,
    aten.pad.default,
}


class FieldTracker:
    """The fields of the tensors of one forward pass, keyed by tensor (weakly); fed by a dispatch mode."""

    def __init__(self) -> None:
        self._fields: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def get(self, t: Any) -> Field | None:
        return self._fields.get(t) if isinstance(t, torch.Tensor) else None

    def set(self, t: torch.Tensor, field: Field | None) -> None:
        if field is not None:
            self._fields[t] = field

    def update(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        """Give the outputs of ``func(*args, **kwargs) -> out`` their fields, where they have one."""
        x = args[0] if args else None
        fx = self.get(x)
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outs:
            return
        if fx is not None and isinstance(x, torch.Tensor):
            special = self._special(func, args, kwargs, x, fx, outs[0])
            if special is not False:
                self.set(outs[0], special)
                return
        inputs = [(t, f) for t in tree_flatten((args, kwargs))[0] if (f := self.get(t)) is not None]
        if not inputs:
            return
        for o in outs:
            self.set(o, self._pointwise(inputs, o))

    @staticmethod
    def _pointwise(inputs: list[tuple[torch.Tensor, Field]], out: torch.Tensor) -> Field | None:
        """An operation that keeps the grid (elementwise, normalisation, concatenation along channels): the
        union of its inputs' fields, if the output has their grid (a 1x1 map broadcasts)."""
        field: Field | None = None
        for t, f in inputs:
            if f.grid:
                if out.dim() < 2 or t.dim() < 2:
                    return None
                if tuple(t.shape[-2:]) != tuple(out.shape[-2:]) and tuple(t.shape[-2:]) != (1, 1):
                    return None
            field = f if field is None else field.union(f)
        if field is not None and field.grid and out.dim() < 2:
            return None
        return field

    def _special(
        self, func: Any, args: tuple, kwargs: dict, x: torch.Tensor, fx: Field, out: torch.Tensor
    ) -> Field | None | bool:
        """The field of an operation that moves the grid; False when ``func`` is none of those."""
        if not fx.grid:
            return False  # one unit per image: every later operation keeps its field
        if func is aten.convolution.default:
            weight = args[1]
            if _arg(args, kwargs, 6, "transposed", False) or weight.dim() != 4:
                return None
            k = tuple(weight.shape[-2:])
            stride, padding, dilation = (
                _pair(_arg(args, kwargs, i, n, 1))
                for i, n in ((3, "stride"), (4, "padding"), (5, "dilation"))
            )
            return fx.window(k, stride, padding, dilation)
        if func in _POOLS:
            k = _pair(_arg(args, kwargs, 1, "kernel_size", None))
            stride = _pair(_arg(args, kwargs, 2, "stride", None), default=k)
            padding = _pair(_arg(args, kwargs, 3, "padding", 0))
            dilation = (
                (1, 1) if func is aten.avg_pool2d.default else _pair(_arg(args, kwargs, 4, "dilation", 1))
            )
            return fx.window(k, stride, padding, dilation)
        if func in _ADAPTIVE:
            (h, w), (oh, ow) = x.shape[-2:], out.shape[-2:]
            if h % oh or w % ow:
                return None  # uneven windows: no single kernel and stride
            return fx.window((h // oh, w // ow), (h // oh, w // ow), (0, 0))
        if func in _PADS:
            pad = list(_arg(args, kwargs, 1, "pad", ()))
            if len(pad) < 2:
                return fx
            top = pad[2] if len(pad) >= 4 else 0
            return Field(fx.h.shift(top), fx.w.shift(pad[0]))
        if func in _REDUCTIONS:
            dims = _arg(args, kwargs, 1, "dim", None)
            dims = range(x.dim()) if dims is None or len(dims) == 0 else dims
            spatial = {d % x.dim() for d in dims} & {x.dim() - 2, x.dim() - 1}
            if not spatial:
                return False
            if len(spatial) == 2:
                return fx.whole(*x.shape[-2:])
            return None
        if func in _RESHAPES:
            if out.dim() >= 2 and tuple(out.shape[-2:]) == tuple(x.shape[-2:]):
                return fx  # the grid untouched (a channel shuffle's reshapes)
            if out.dim() == 2 and x.dim() >= 3 and out.shape[0] == x.shape[0]:
                return fx.whole(*x.shape[-2:])  # (B, C, H, W) -> (B, C*H*W): every unit, one vector
            return None
        if func in _PERMUTES:
            if out.dim() >= 2 and x.dim() == out.dim() and out.shape[-2:] == x.shape[-2:]:
                dims = list(_arg(args, kwargs, 1, "dims", [])) if func is aten.permute.default else None
                if dims is not None and [d % x.dim() for d in dims[-2:]] != [x.dim() - 2, x.dim() - 1]:
                    return None
                if func is aten.transpose.int:
                    moved = {
                        _arg(args, kwargs, 1, "dim0", 0) % x.dim(),
                        _arg(args, kwargs, 2, "dim1", 0) % x.dim(),
                    }
                    if moved & {x.dim() - 2, x.dim() - 1} and len(moved) == 2:
                        return None
                return fx
            return None
        return False


class _Reached(Exception):
    """Ends a probe's forward pass at the measured layer."""


def _swap_max_pools(model: nn.Module) -> None:
    """Max-pooling passes a gradient to one input of each window; average pooling of the same geometry to all."""
    for name, child in model.named_children():
        if isinstance(child, nn.MaxPool2d):
            if _pair(child.dilation) != (1, 1):
                raise ConfigError(f"'{name}' is a dilated max-pool, which gradient_field cannot measure")
            pool = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode)
            setattr(model, name, pool)
        else:
            _swap_max_pools(child)


def gradient_field(
    model: nn.Module, input_size: tuple[int, int, int], layer: str = ""
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Measure the receptive field of the central unit of ``layer``'s output (the model's output when empty).

    A copy of the model gets weights that keep every value positive (each weight 1 / fan-in, no bias, batch
    norm as identity) and average instead of max pooling, so that no gradient cancels or is routed away; the
    input pixels with a non-zero gradient of one unit are then exactly the pixels it depends on.

    Returns ``(unit, (top, bottom), (left, right))``: the unit's (row, column) on ``layer``'s map and the
    inclusive pixel extent of the non-zero gradient of its channels' sum along each axis (clipped by the
    image's borders).
    """
    probe = copy.deepcopy(model).float().eval()
    _swap_max_pools(probe)
    with torch.no_grad():
        for p in probe.parameters():
            p.fill_(1.0 / math.prod(p.shape[1:]) if p.dim() >= 2 else (1.0 if p.dim() == 1 else 0.0))
        for m in probe.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                if m.bias is not None:
                    m.bias.zero_()
            elif getattr(m, "bias", None) is not None and isinstance(m.bias, nn.Parameter):
                m.bias.zero_()
    target = dict(probe.named_modules()).get(layer)
    if target is None:
        raise ConfigError(f"the model has no layer '{layer}'; give a name from its summary's rows")
    captured: list[torch.Tensor] = []

    def stop(module: nn.Module, inputs: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _Reached  # the layers after this one cost time and change nothing

    handle = target.register_forward_hook(stop)
    x = torch.ones(1, *input_size, requires_grad=True)
    try:
        probe(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ConfigError(f"layer '{layer}' did not run in the model's forward pass; pick one that does")
    fmap = captured[-1]  # (1, C, H, W)
    if fmap.dim() != 4:
        raise ConfigError(f"layer '{layer}' gives a {fmap.dim()}-D output, not a feature map (B, C, H, W)")
    i, j = fmap.shape[-2] // 2, fmap.shape[-1] // 2
    fmap[0, :, i, j].sum().backward()  # every channel: a concatenation's channels come from different paths
    nonzero = x.grad[0].abs().sum(0) > 0  # (H, W)
    rows, cols = nonzero.any(1).nonzero().flatten(), nonzero.any(0).nonzero().flatten()
    return (i, j), (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))
