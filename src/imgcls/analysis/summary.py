"""A layer-by-layer summary of a model: output shapes, parameters, multiply-adds, activations, receptive fields.

One forward pass at batch 1, on the meta device where the model allows (no memory, no arithmetic: ViT-L costs
what ResNet-18 does), watched at the level of aten operations by a dispatch mode:

- multiply-adds (MACs) of convolutions (grouped, depthwise, dilated, strided, transposed: ``C_in / groups *
  k_h * k_w`` per output value), matrix products (``mm``, ``addmm``, ``bmm``, ``baddbmm``, what ``linear``,
  ``matmul`` and ``einsum`` become) and fused attention (``scaled_dot_product_attention`` on the CPU runs one
  fused operation, which ``torch.utils.flop_counter`` counts as 0; here it costs its two products, QK^T and
  AV). FLOPs are 2 x MACs. Elementwise work (normalisation, activations, softmax, sums) is not counted, as in
  the papers' tables.
- activations: the bytes of the tensors each layer computes (views and in-place results are not new memory).
- the receptive field, jump and start of each layer's output units (:mod:`imgcls.analysis.receptive_field`).

Each operation is charged to the innermost module running it, then to that module's shown ancestor at the
chosen depth, so the rows add up to the totals exactly; a row whose children are shown carries only its own
operations (a residual sum, a class token). Parameters are charged to the module that owns them, shared ones
once.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from imgcls.analysis.receptive_field import Field, FieldTracker
from imgcls.errors import ConfigError, ImgclsError, UnknownNameError, unknown_name

__all__ = ["Row", "Summary", "count_macs", "summarize", "summarize_model"]

log = logging.getLogger(__name__)
aten = torch.ops.aten


def _mm(args: tuple, out: torch.Tensor) -> int:
    a = args[-2]  # (..., n, k) @ (..., k, m): k multiply-adds per output value
    return out.numel() * a.shape[-1]


def _conv(args: tuple, out: torch.Tensor) -> int:
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    per_value = math.prod(w.shape[1:])  # C_in / groups * k_h * k_w (transposed: C_out / groups * k)
    return (x.numel() if transposed else out.numel()) * per_value


def _attention(args: tuple, out: Any) -> int:
    q, k, v = args[0], args[1], args[2]  # (B, H, L, E), (B, H, S, E), (B, H, S, Ev)
    batch = math.prod(q.shape[:-2])
    return batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])  # QK^T, then AV


_MAC_FORMULAS: dict[Any, Callable[[tuple, Any], int]] = {
    aten.mm.default: _mm,
    aten.addmm.default: _mm,
    aten.bmm.default: _mm,
    aten.baddbmm.default: _mm,
    aten.convolution.default: _conv,
    aten._scaled_dot_product_flash_attention_for_cpu.default: _attention,
    aten._scaled_dot_product_efficient_attention.default: _attention,
    aten._scaled_dot_product_flash_attention.default: _attention,
    aten._scaled_dot_product_cudnn_attention.default: _attention,
}


def count_macs(func: Any, args: tuple, out: Any) -> int:
    """Multiply-adds of one aten operation ``func(*args) -> out`` (0 for operations that count none)."""
    formula = _MAC_FORMULAS.get(func)
    return formula(args, out) if formula is not None else 0


@dataclass
class Row:
    """One layer of a :class:`Summary`.

    ``macs``, ``flops`` and ``activation_bytes`` are this row's own: the work of its module, less that of
    the rows shown below it. ``field``, ``jump`` and ``start`` are (height, width) in input pixels, None
    where the output has no image grid (tokens) or the layer never ran.
    """

    name: str
    type: str
    depth: int
    output_shape: tuple[int, ...] | None = None
    params_trainable: int = 0
    params_frozen: int = 0
    macs: int = 0
    activation_bytes: int = 0
    calls: int = 0
    field: tuple[float, float] | None = None
    jump: tuple[float, float] | None = None
    start: tuple[float, float] | None = None

    @property
    def flops(self) -> int:
        """Floating-point operations: 2 per multiply-add."""
        return 2 * self.macs

    @property
    def params(self) -> int:
        return self.params_trainable + self.params_frozen

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flops"] = self.flops
        for key in ("output_shape", "field", "jump", "start"):
            d[key] = None if d[key] is None else [_plain(v) for v in d[key]]
        return d


def _plain(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


@dataclass
class Summary:
    """Rows (execution order; parents before children) and totals, which are the sums of the rows."""

    model: str
    input_size: tuple[int, ...]
    depth: int
    rows: list[Row]
    output_shape: tuple[int, ...] | None
    device: str
    totals: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        keys = ("params_trainable", "params_frozen", "macs", "activation_bytes")
        self.totals = {k: sum(getattr(r, k) for r in self.rows) for k in keys}
        self.totals["params"] = self.totals["params_trainable"] + self.totals["params_frozen"]
        self.totals["flops"] = 2 * self.totals["macs"]

    def row(self, name: str) -> Row:
        """The row of the module ``name`` (as in ``model.named_modules()``; ``""`` is the model itself)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "depth": self.depth,
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "device": self.device,
            "totals": dict(self.totals),
            "rows": [r.to_dict() for r in self.rows],
        }

    _COLUMNS = (
        "name", "type", "depth", "output_shape", "params_trainable", "params_frozen", "macs", "flops",
        "activation_bytes", "field", "jump", "start",
    )  # fmt: skip

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self._COLUMNS)
        for r in self.rows:
            d = r.to_dict()
            writer.writerow(
                ["x".join(map(str, d[k])) if isinstance(d[k], list) else d[k] for k in self._COLUMNS]
            )
        return buf.getvalue()

    def to_table(self) -> str:
        """A table for the terminal: one line per row, indented by depth, then the totals."""
        head = (
            "layer",
            "type",
            "output",
            "params",
            "frozen",
            "MACs",
            "FLOPs",
            "activations",
            "RF",
            "jump",
            "start",
        )
        lines = [
            [
                "  " * r.depth + (r.name.rsplit(".", 1)[-1] if r.name else "(model)"),
                r.type,
                "x".join(map(str, r.output_shape)) if r.output_shape else "--",
                f"{r.params_trainable:,}" if r.params_trainable else "--",
                f"{r.params_frozen:,}" if r.params_frozen else "--",
                _si(r.macs),
                _si(r.flops),
                _bytes(r.activation_bytes),
                _pair(r.field),
                _pair(r.jump),
                _pair(r.start),
            ]
            for r in self.rows
        ]
        t = self.totals
        total = ["total", "", "", f"{t['params_trainable']:,}", f"{t['params_frozen']:,}", _si(t["macs"]),
                 _si(t["flops"]), _bytes(t["activation_bytes"]), "", "", ""]  # fmt: skip
        widths = [max(len(x[i]) for x in [head, total, *lines]) for i in range(len(head))]
        left = {0, 1}

        def fmt(cells: list[str] | tuple[str, ...]) -> str:
            return "  ".join(
                c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
            )

        rule = "-" * len(fmt(head))
        size = "x".join(map(str, self.input_size))
        out = [f"{self.model} at {size} (batch 1, depth {self.depth})", fmt(head), rule]
        out += [fmt(x).rstrip() for x in lines]
        out += [rule, fmt(total).rstrip()]
        out.append(
            "MACs: multiply-adds of convolutions, matrix products and attention; FLOPs = 2 x MACs. RF: receptive "
            "field, jump and start (centre of the first unit) in input pixels."
        )
        return "\n".join(out)


def _si(n: int) -> str:
    if n == 0:
        return "--"
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _bytes(n: int) -> str:
    if n == 0:
        return "--"
    for div, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def _pair(v: tuple[float, float] | None) -> str:
    if v is None:
        return "--"
    a, b = (f"{_plain(x)}" for x in v)
    return a if a == b else f"{a}x{b}"


_BATCH_NORMS = {aten.native_batch_norm.default, aten._native_batch_norm_legit_no_training.default}


class _Watch(TorchDispatchMode):
    """Charges each aten operation's MACs and new memory to the running module; follows receptive fields."""

    def __init__(self, charge: Callable[[int, int], None], fields: FieldTracker) -> None:
        super().__init__()
        self.charge, self.fields = charge, fields

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _BATCH_NORMS and args[0].is_meta:
            # torch's meta batch norm is a Python decomposition, 2/3 of a DenseNet's summary time: the shapes
            # are known (the output is the input's; eval mode saves no statistics)
            x = args[0]
            out = (torch.empty_like(x), x.new_empty(0), x.new_empty(0))
        else:
            out = func(*args, **kwargs)
        returns = func._schema.returns
        outs = out if isinstance(out, (tuple, list)) else (out,)
        new = sum(
            t.numel() * t.element_size()
            for t, ret in zip(outs, returns)
            if isinstance(t, torch.Tensor) and ret.alias_info is None  # views and in-place results: no memory
        )
        self.charge(count_macs(func, args, out), new)
        self.fields.update(func, args, kwargs, out)
        return out


def _first_tensor(out: Any) -> torch.Tensor | None:
    return next((t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)), None)


def _on_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def summarize(
    model: nn.Module,
    input_size: tuple[int, int, int],
    *,
    depth: int = 3,
    name: str | None = None,
    meta: bool | None = None,
) -> Summary:
    """Summarize ``model`` on one image of ``input_size`` (C, H, W), with rows nested to ``depth``.

    The model runs in eval mode with its parameters and buffers swapped for meta tensors (``meta=None``: try
    that, and run on the model's own device with a zero image if the model cannot run on meta); its weights
    and mode are left as they were.
    """
    if depth < 0:
        raise ConfigError(f"depth must be >= 0, got {depth}")
    if len(input_size) != 3 or not all(isinstance(s, int) and s >= 1 for s in input_size):
        raise ConfigError(f"input size must be three positive whole numbers (C, H, W), got {input_size}")
    named = dict(model.named_modules())  # shared modules once, under their first name
    names = {id(m): n for n, m in named.items()}
    shown = [n for n in named if (n.count(".") + 1 if n else 0) <= depth]
    rows = {n: Row(n, type(named[n]).__name__, n.count(".") + 1 if n else 0) for n in shown}

    def row_of(module_name: str) -> Row:
        parts = module_name.split(".") if module_name else []
        return rows[".".join(parts[:depth])]

    for pname, p in model.named_parameters():  # shared parameters once
        r = row_of(pname.rsplit(".", 1)[0] if "." in pname else "")
        if p.requires_grad:
            r.params_trainable += p.numel()
        else:
            r.params_frozen += p.numel()

    stack: list[str] = []
    order: dict[str, int] = {}
    fields = FieldTracker()

    def charge(macs: int, new_bytes: int) -> None:
        r = row_of(stack[-1] if stack else "")
        r.macs += macs
        r.activation_bytes += new_bytes

    def pre(module: nn.Module, inputs: Any) -> None:
        n = names.get(id(module), "")
        order.setdefault(n, len(order))
        stack.append(n)

    def post(module: nn.Module, inputs: Any, output: Any) -> None:
        n = stack.pop() if stack else ""
        if n in rows:
            r, t = rows[n], _first_tensor(output)
            r.calls += 1
            r.output_shape = tuple(t.shape) if t is not None else None
            f = fields.get(t)
            r.field, r.start = (f.size, f.start) if f is not None else (None, None)
            r.jump = f.jump if f is not None and f.grid else None  # one unit per image: no spacing

    handles = []
    for m in named.values():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post, always_call=True))

    # meta=None: try the meta device, then the model's own; a model already on meta can only run there.
    attempts = [True] if meta or _on_meta(model) else [False] if meta is False else [True, False]
    device, out = "meta", None
    was_training = model.training
    model.eval()
    try:
        for i, on_meta in enumerate(attempts):
            try:
                out = _run(model, input_size, fields, charge, meta=on_meta)
                device = "meta" if on_meta else str(_device(model))
                break
            except Exception as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if i + 1 < len(attempts):
                    # data-dependent shapes or tensors kept outside parameters and buffers: run it for real
                    log.debug("summary: %s cannot run on the meta device (%s)", type(model).__name__, first)
                    _reset(rows.values(), stack, order)
                    continue
                size = "x".join(map(str, input_size))
                raise ConfigError(
                    f"{name or type(model).__name__} does not run on a {size} input ({type(e).__name__}: "
                    f"{first[:200]}); give the input size it takes (C x H x W, e.g. 3x224x224)"
                ) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # Execution order; a module that never ran itself (a ModuleList) where its first child ran.
    inf = len(named) + len(order)

    def key(n: str) -> tuple[int, int]:
        first = min((i for m, i in order.items() if m == n or m.startswith(n + ".") or n == ""), default=inf)
        return first, n.count(".") + (1 if n else 0)

    ordered = sorted(rows.values(), key=lambda r: (*key(r.name), shown.index(r.name)))
    t = _first_tensor(out)
    return Summary(
        model=name or type(model).__name__,
        input_size=tuple(input_size),
        depth=depth,
        rows=ordered,
        output_shape=tuple(t.shape) if t is not None else None,
        device=device,
    )


def _run(
    model: nn.Module,
    input_size: tuple[int, int, int],
    fields: FieldTracker,
    charge: Callable[[int, int], None],
    *,
    meta: bool,
) -> Any:
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if meta:
        # The same modules with meta tensors in place of their weights and buffers: no memory is touched.
        state = {
            **{n: torch.empty_like(p, device="meta") for n, p in model.named_parameters()},
            **{n: torch.empty_like(b, device="meta") for n, b in model.named_buffers()},
        }
        x = torch.zeros(1, *input_size, device="meta", dtype=dtype)
    else:
        state = None
        x = torch.zeros(1, *input_size, device=_device(model), dtype=dtype)
    fields.set(x, Field.pixels())
    with torch.no_grad(), _Watch(charge, fields):
        if state is None:
            return model(x)
        return torch.func.functional_call(model, state, (x,))


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _reset(rows: Any, stack: list[str], order: dict[str, int]) -> None:
    for r in rows:
        r.macs = r.activation_bytes = r.calls = 0
        r.output_shape = r.field = r.jump = r.start = None
    stack.clear()
    order.clear()


def summarize_model(
    target: str,
    input_size: tuple[int, ...] | None = None,
    *,
    depth: int = 3,
    num_classes: int | None = None,
) -> Summary:
    """Summarize a registered model by name, or the model of a run directory, built on the meta device.

    ``input_size`` is (C, H, W) or (H, W) (the model's channels); by default the model's native size (a
    run: the image size it was trained at). As in training, a side of 64 px or less builds a registered
    model's small-image form. ``num_classes`` defaults to 1000 (a run: its own).
    """
    from imgcls.models import create_model, get_model_spec, list_models

    path = Path(target)
    if path.exists():  # a run directory, or a weights file inside one
        from imgcls.train.checkpoint import MODEL_INFO, build_model_from_info, read_model_info

        run_dir = path if path.is_dir() else path.parent
        info = read_model_info(run_dir)
        if num_classes is not None:
            info = {**info, "num_classes": num_classes}
        size = _full_size(input_size, info["in_chans"]) or (
            info["in_chans"],
            info["image_size"],
            info["image_size"],
        )
        if size[0] != info["in_chans"]:
            raise ConfigError(
                f"'{run_dir}' takes {info['in_chans']}-channel images, not {size[0]}: give --input "
                f"{info['in_chans']}x{size[1]}x{size[2]}"
            )
        label, build = f"{info['model']} ({run_dir})", lambda: build_model_from_info(info)
        where = f"fix model_kwargs in {run_dir / MODEL_INFO}"
    else:
        try:
            spec = get_model_spec(target)
        except UnknownNameError:
            raise unknown_name(
                "model", target, list_models(), "run 'imgcls models' to list them, or give a run directory"
            ) from None
        size = _full_size(input_size, spec.input_size[0]) or spec.input_size
        label = target
        where = "give another --input"

        def build() -> nn.Module:
            return create_model(
                target, num_classes=num_classes or 1000, in_chans=size[0], image_size=min(size[1:])
            )

    try:
        with torch.device("meta"):
            model = build()
    except ImgclsError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"cannot build {label} ({type(e).__name__}: {first[:200]}); {where}") from None
    return summarize(model, size, depth=depth, name=label, meta=True)


def _full_size(size: tuple[int, ...] | None, channels: int) -> tuple[int, int, int] | None:
    if size is None:
        return None
    if len(size) == 2:
        return channels, size[0], size[1]
    if len(size) == 3:
        return size[0], size[1], size[2]
    raise ConfigError(f"input size must be (C, H, W) or (H, W), got {size}")
