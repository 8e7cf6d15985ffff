"""ONNX export of a trained run, checked in onnxruntime on the spot (``imgcls export RUN --format onnx``).

The exporter is pinned: ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based exporter, which
needs ``onnxscript``) at opset :data:`OPSET` unless asked otherwise. The batch axis is dynamic by default
(``--no-dynamic-batch`` fixes it at 1); channels and image size are fixed at the run's.

What a client must do to an image before the graph sees it is stored in the file itself, as JSON under the
metadata key ``imgcls`` (``onnx.load(f).metadata_props``, or ``InferenceSession.get_modelmeta()
.custom_metadata_map`` in any onnxruntime language binding): the class names, the image size and channels, the
per-channel mean and std, the input kind, and a one-paragraph recipe (``preprocessing``). Two input kinds:

- ``float32`` (default): ``(B, C, H, W)`` with ``x = (pixel / 255 - mean[c]) / std[c]``;
- ``uint8`` (``--uint8-input``): ``(B, C, H, W)`` pixels 0..255, the scaling and normalisation baked into the
  graph, so a client only decodes and resizes.

Either way the client resizes the image to ``image_size`` x ``image_size`` (bilinear, antialiased: what
Pillow's ``Image.resize(..., Image.BILINEAR)`` does) after converting it to gray (``in_chans`` 1, ITU-R 601
luma) or RGB (3), as imgcls does in training. Where the run averages each image's logits with its mirror's
(``tta_flip``), the metadata says so and :class:`OnnxClassifier` does it.

Every export is checked before the file is written: ``onnx.checker`` with ``full_check`` (shape inference
included), then onnxruntime against eager PyTorch at batch 1, 3 and 8 (:data:`VERIFY_BATCHES`) on seeded
random inputs: the largest logit difference must be within ``rtol`` (1e-4) of the largest logit, and the
argmax identical (except for rows whose two best logits are closer than the difference itself, an exact tie
in float arithmetic). A failure raises :class:`ExportError` and writes nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imgcls.errors import ConfigError, DataError, ExportError
from imgcls.train.checkpoint import LoadedRun, load_run
from imgcls.utils.files import atomic_path

__all__ = [
    "METADATA_KEY",
    "OPSET",
    "VERIFY_BATCHES",
    "ExportResult",
    "OnnxClassifier",
    "Parity",
    "compare_logits",
    "export_model_onnx",
    "export_onnx",
    "require",
    "run_metadata",
    "strip_debug_info",
]

log = logging.getLogger(__name__)

OPSET = 18  # the dynamo exporter's native opset in torch 2.13; older opsets are converted down from it
METADATA_KEY = "imgcls"
METADATA_FORMAT = "imgcls-onnx/1"
VERIFY_BATCHES = (1, 3, 8)
RTOL = 1e-4
ATOL = (
    1e-6  # floor for a model whose logits are all near zero (an untrained one), where 1e-4 of them is noise
)
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MAX_BATCH = 65_536  # the dynamic batch axis's upper bound (torch.export needs one)
_EXTRA = "pip install 'imgcls[export]' (onnx, onnxscript, onnxruntime)"


def require(module: str) -> Any:
    """Import an optional dependency of export, or raise :class:`ConfigError` naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{module} is not installed, and export needs it: {_EXTRA}") from None


@dataclass
class Parity:
    """How an exported model's logits compare with eager PyTorch's on one batch."""

    batch: int
    max_abs_diff: float
    max_abs_logit: float
    argmax_mismatches: int  # rows whose argmax differs although their two best logits are clearly apart
    rtol: float = RTOL

    @property
    def rel_diff(self) -> float:
        return self.max_abs_diff / max(self.max_abs_logit, 1e-30)

    @property
    def ok(self) -> bool:
        close = self.max_abs_diff <= self.rtol * self.max_abs_logit + ATOL
        return close and self.argmax_mismatches == 0


def compare_logits(got: np.ndarray, want: np.ndarray, rtol: float = RTOL) -> Parity:
    """Compare ``(B, K)`` logits of an exported model (``got``) with eager PyTorch's (``want``)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise ExportError(f"the exported model gives logits of shape {got.shape}, eager PyTorch {want.shape}")
    if not np.isfinite(got).all():
        return Parity(len(want), float("inf"), float(np.abs(want).max()), len(want), rtol)
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    mismatches = 0
    if want.shape[1] > 1:
        top2 = np.sort(want, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 2 * diff  # a closer pair is a tie within the arithmetic's error
        mismatches = int(((got.argmax(1) != want.argmax(1)) & clear).sum())
    return Parity(len(want), diff, float(np.abs(want).max()) if want.size else 0.0, mismatches, rtol)


def run_metadata(info: dict[str, Any], classes: Sequence[str], input_kind: str = "float32") -> dict[str, Any]:
    """What a client needs besides the graph: classes, image geometry, normalisation, and how to use them."""
    size, chans = int(info["image_size"]), int(info["in_chans"])
    mode = {1: "gray (ITU-R 601 luma, Pillow mode 'L')", 3: "RGB"}.get(chans, f"{chans} channels")
    if input_kind == "uint8":
        tail = "and feed the uint8 pixels 0..255 as (B, C, H, W): scaling and normalisation are in the graph."
    else:
        tail = (
            "scale pixels to [0, 1] (divide by 255), normalise each channel c as (x - mean[c]) / std[c], and "
            "feed float32 (B, C, H, W)."
        )
    recipe = (
        f"Convert the image to {mode}, resize it to {size}x{size} pixels (bilinear, antialiased, as Pillow's "
        f"Image.resize(..., BILINEAR)), {tail} Output: logits (B, {len(classes)}); softmax gives probabilities."
    )
    if info.get("tta_flip", False):
        recipe += " This run averages each image's logits with those of its horizontal mirror (tta_flip)."
    return {
        "format": METADATA_FORMAT,
        "model": str(info["model"]),
        "classes": list(classes),
        "in_chans": chans,
        "image_size": size,
        "mean": [float(v) for v in info["mean"]],
        "std": [float(v) for v in info["std"]],
        "input": input_kind,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "tta_flip": bool(info.get("tta_flip", False)),
        "dataset": str(info.get("dataset", "")),
        "preprocessing": recipe,
    }


class Uint8Input(nn.Module):
    """``model`` behind the run's scaling and normalisation: takes uint8 ``(B, C, H, W)`` pixels 0..255."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        # (x / 255 - mean) / std == x * scale - shift: one multiply-add in the graph
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", mean_t / std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, K)
        return self.model(x.float() * self.scale - self.shift)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporters' warnings and log lines (deprecations, "torchvision is not installed") meanwhile."""
    loggers = [logging.getLogger(name) for name in ("torch", "onnx_ir", "onnxscript", "onnxruntime")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def example_input(shape: tuple[int, int, int], batch: int, uint8: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if uint8:
        return torch.randint(0, 256, (batch, *shape), generator=g, dtype=torch.uint8)
    return torch.randn((batch, *shape), generator=g)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def export_model_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    path: str | Path,
    *,
    opset: int = OPSET,
    dynamic_batch: bool = True,
    metadata: dict[str, Any] | None = None,
    uint8_input: bool = False,
    verify: bool = True,
    rtol: float = RTOL,
) -> list[Parity]:
    """Export ``model`` (eval mode; input ``(B, *input_shape)``) to ONNX at ``path``, checked before it is written.

    Returns the parity of each verified batch (:data:`VERIFY_BATCHES`; batch 1 alone without a dynamic batch).
    Raises :class:`ExportError` where the exporter fails or the file does not compute what ``model`` does.
    """
    onnx = require("onnx")
    require("onnxscript")
    if not 7 <= opset <= 25:
        raise ConfigError(f"opset {opset} is out of range: pass --opset between 7 and 25 (default {OPSET})")
    model = model.eval()
    batches = VERIFY_BATCHES if dynamic_batch else (1,)
    example = example_input(input_shape, 2 if dynamic_batch else 1, uint8_input, seed=0)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if dynamic_batch else None
    try:
        with quiet_exporter(), torch.no_grad():  # failures raise; the chatter is not the user's business
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=opset,
                dynamic_shapes=dynamic,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                external_data=False,
                report=False,
                verbose=False,
            )
    except Exception as e:
        raise ExportError(
            f"torch.onnx.export (dynamo, opset {opset}) cannot export this model ({first_line(e)}): "
            "try another --opset, --no-dynamic-batch, or --format torch-export"
        ) from None
    if program is None:  # not with dynamo=True; kept for the type checker
        raise ExportError("torch.onnx.export returned no program")
    strip_debug_info(program.model)
    for key, value in (metadata or {}).items():
        program.model.metadata_props[key] = value if isinstance(value, str) else json.dumps(value)
    path = Path(path)
    with atomic_path(path) as tmp:
        with quiet_exporter():
            program.save(tmp, external_data=False)
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as e:
            raise ExportError(f"onnx.checker rejects the exported model ({first_line(e)})") from None
        parities = verify_onnx(tmp, model, input_shape, batches, uint8_input, rtol) if verify else []
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return parities


def strip_debug_info(model: Any) -> None:
    """Drop what the exporter records for debugging from an ``onnx_ir`` model or an ``onnx.ModelProto``, in place.

    The dynamo exporter annotates every node with ``metadata_props``: the Python stack trace of the line that
    made it (absolute source paths of the machine that exported it), the module's class hierarchy and name
    scopes, the FX node and the rewrite rule that produced it; about 1.5 kB a node, 7% of a 1 MB model, and
    more than the weights of a small layer. No runtime reads them. The graph, its weights, names and shapes
    and the model-level metadata (imgcls's own, under :data:`METADATA_KEY`) are kept.
    """
    if hasattr(model, "graph") and hasattr(model.graph, "all_nodes"):  # onnx_ir.Model
        graphs = [model.graph, *model.functions.values()]
        for graph in graphs:
            graph.doc_string = None
            for node in graph.all_nodes():
                node.metadata_props.clear()
                node.doc_string = None
                for value in node.outputs:
                    value.metadata_props.clear()
                    value.doc_string = None
            initializers = graph.initializers.values() if hasattr(graph, "initializers") else ()
            for value in [*graph.inputs, *graph.outputs, *initializers]:
                value.metadata_props.clear()
                value.doc_string = None
        model.doc_string = None
        return
    model.doc_string = ""
    graphs = [model.graph]
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    while nodes:
        node = nodes.pop()
        del node.metadata_props[:]
        node.doc_string = ""
        for attr in node.attribute:  # the bodies of If, Loop, Scan
            subs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            graphs.extend(subs)
            nodes.extend(n for g in subs for n in g.node)
    for graph in graphs:
        graph.doc_string = ""
        for item in [*graph.initializer, *graph.value_info, *graph.input, *graph.output]:
            del item.metadata_props[:]
            item.doc_string = ""


def verify_onnx(
    path: str | Path,
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batches: Sequence[int] = VERIFY_BATCHES,
    uint8_input: bool = False,
    rtol: float = RTOL,
) -> list[Parity]:
    """Run the ONNX file in onnxruntime and ``model`` in eager PyTorch on the same inputs; raise on a mismatch."""
    session = _session(path)
    out: list[Parity] = []
    for i, b in enumerate(batches):
        x = example_input(input_shape, b, uint8_input, seed=100 + i)
        with torch.no_grad():
            want = model(x).float().numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        p = compare_logits(got, want, rtol)
        log.debug(
            "onnxruntime vs eager, batch %d: max |diff| %.3g (%.3g relative)", b, p.max_abs_diff, p.rel_diff
        )
        if not p.ok:
            raise ExportError(
                f"the ONNX model does not match eager PyTorch at batch {b}: max |logit difference| "
                f"{p.max_abs_diff:.3g} ({p.rel_diff:.3g} of the largest logit, allowed {rtol:g}), "
                f"{p.argmax_mismatches} different argmax; try another --opset or --format torch-export"
            )
        out.append(p)
    return out


def _session(path: str | Path, threads: int | None = None) -> Any:
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: the CLI reports what matters
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise DataError(
            f"onnxruntime cannot load '{path}' ({first_line(e)}): give an ONNX model file"
        ) from None


@dataclass
class ExportResult:
    """What :func:`export_onnx` (and ``export_torch``) wrote, and how its output compared with eager PyTorch."""

    path: Path
    format: str
    metadata: dict[str, Any]
    parity: list[Parity] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "bytes": self.path.stat().st_size,
            "metadata": self.metadata,
            "parity": [{**asdict(p), "rel_diff": p.rel_diff, "ok": p.ok} for p in self.parity],
        }


def load_for_export(run: str | Path | LoadedRun, which: str) -> LoadedRun:
    return run if isinstance(run, LoadedRun) else load_run(run, "cpu", which=which)


def default_out(loaded: LoadedRun, suffix: str) -> Path:
    """Beside the weights: ``RUN/model.onnx``, ``RUN/model.pt2``, ``RUN/model.int8.onnx``."""
    return loaded.weights.parent / f"model{suffix}"


def export_onnx(
    run: str | Path | LoadedRun,
    out: str | Path | None = None,
    *,
    opset: int = OPSET,
    dynamic_batch: bool = True,
    uint8_input: bool = False,
    which: str = "best",
    verify: bool = True,
) -> ExportResult:
    """Export a trained run to ONNX (default ``RUN/model.onnx``) with its metadata; verified before written."""
    loaded = load_for_export(run, which)
    info = loaded.info
    model: nn.Module = loaded.model.float().eval()
    if uint8_input:
        model = Uint8Input(model, info["mean"], info["std"]).eval()
    meta = run_metadata(info, loaded.classes, "uint8" if uint8_input else "float32")
    path = Path(out) if out is not None else default_out(loaded, ".onnx")
    shape = (int(info["in_chans"]), int(info["image_size"]), int(info["image_size"]))
    parity = export_model_onnx(
        model,
        shape,
        path,
        opset=opset,
        dynamic_batch=dynamic_batch,
        metadata={METADATA_KEY: meta},
        uint8_input=uint8_input,
        verify=verify,
    )
    return ExportResult(path, "onnx", meta, parity)


def _checked_metadata(session: Any, path: str | Path) -> dict[str, Any]:
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise DataError(
            f"'{path}' holds no imgcls metadata: export it with 'imgcls export RUN --format onnx'"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise DataError(f"'{path}': its imgcls metadata is not valid JSON; export the run again") from None
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("classes"), list)
        and all(isinstance(c, str) for c in meta["classes"])
        and isinstance(meta.get("in_chans"), int)
        and meta["in_chans"] in (1, 3)
        and isinstance(meta.get("image_size"), int)
        and 1 <= meta["image_size"] <= 4096
        and meta.get("input") in ("float32", "uint8")
        and all(
            isinstance(meta.get(k), list)
            and len(meta[k]) == meta["in_chans"]
            and all(isinstance(v, (int, float)) and np.isfinite(v) for v in meta[k])
            for k in ("mean", "std")
        )
        and all(v > 0 for v in meta["std"])
    )
    if not ok:
        raise DataError(
            f"'{path}': its imgcls metadata is damaged (classes, size, mean, std); export the run again"
        )
    return meta


class OnnxClassifier:
    """An exported imgcls ONNX model in onnxruntime, fed as its metadata says; no torch model code involved."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"'{self.path}' does not exist: give an ONNX file written by 'imgcls export'")
        self.session = _session(self.path, threads)
        self.meta = _checked_metadata(self.session, self.path)
        self.input_name = self.session.get_inputs()[0].name
        mean = np.asarray(self.meta["mean"], np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.meta["std"], np.float32).reshape(1, -1, 1, 1)
        self._scale, self._shift = 1.0 / (255.0 * std), mean / std

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(B, K)`` of a batch already in the model's input form (``float32`` normalised or ``uint8``)."""
        return self.session.run(None, {self.input_name: x})[0]

    def logits(self, pixels: np.ndarray, tta_flip: bool | None = None) -> np.ndarray:
        """Logits ``(B, K)`` of uint8 ``(B, C, H, W)`` pixels at the model's size; mirrored too where the run did."""
        if self.meta["input"] == "float32":
            x = (pixels.astype(np.float32) * self._scale - self._shift).astype(np.float32)
        else:
            x = np.ascontiguousarray(pixels, dtype=np.uint8)
        out = self.run(x)
        if self.meta["tta_flip"] if tta_flip is None else tta_flip:
            out = 0.5 * (out + self.run(np.ascontiguousarray(x[..., ::-1])))
        return out
