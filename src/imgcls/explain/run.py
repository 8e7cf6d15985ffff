"""``imgcls explain``: every explanation of a trained run's predictions, as pictures and raw maps.

:func:`explain_run` loads a run, reads images as ``imgcls predict`` does (converted to the run's channels and
size, normalised as in training), and for each method writes ``METHOD.png`` (titled with each image's class
and probability) and ``METHOD.npy`` (the raw maps), and ``explain.json`` naming the run, the layer, the
class explained for every image and the files. A method that does not apply to the model (rollout on a CNN)
is an error when asked for by name, and is skipped with its reason (in the JSON) under ``all``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.errors import ConfigError, unknown_name
from imgcls.explain import render
from imgcls.explain.attention import attention_rollout, class_attention, window_attention
from imgcls.explain.cam import grad_cam, grad_cam_pp
from imgcls.explain.deconvnet import deconvnet, guided_backprop
from imgcls.explain.features import feature_maps, first_layer_filters
from imgcls.explain.hooks import canonical_name
from imgcls.explain.occlusion import occlusion
from imgcls.models.registry import get_model_spec
from imgcls.predict import ImageInput, load_images
from imgcls.train.checkpoint import LoadedRun, load_run
from imgcls.utils.device import resolve_device
from imgcls.utils.files import atomic_path, atomic_write_json

__all__ = ["METHODS", "ExplainResult", "explain_run"]

log = logging.getLogger(__name__)

# Method names of the command line, in the order ``all`` runs them.
METHODS = (
    "gradcam",
    "gradcam++",
    "occlusion",
    "deconvnet",
    "guided-backprop",
    "filters",
    "feature-maps",
    "attention",
    "rollout",
)
MAX_IMAGES = 32  # pictures stay readable; more images: run again on another set


@dataclass
class ExplainResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it does not apply


def _save_npy(path: Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    return path


def _resolve_class(target: str | int | None, classes: list[str]) -> int | None:
    """A class given by name or index; None explains each image's predicted class."""
    if target is None:
        return None
    if isinstance(target, str) and target in classes:
        return classes.index(target)
    try:
        index = int(target)
    except ValueError:
        raise unknown_name("class", str(target), classes, "give a class name or index") from None
    if not 0 <= index < len(classes):
        raise ConfigError(
            f"class index {index} out of range: the run has {len(classes)} classes (0..{len(classes) - 1})"
        )
    return index


class _Explainer:
    """One run and one batch of images; a method per picture."""

    def __init__(
        self,
        loaded: LoadedRun,
        names: list[str],
        pixels: torch.Tensor,
        layer: str | None,
        target: int | None,
        top_k: int,
        device: torch.device,
    ) -> None:
        self.model, info = loaded.model.to(device).eval(), loaded.info
        self.classes = loaded.classes
        self.model_name = info["model"]
        self.names = names
        mean = torch.tensor(info["mean"], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(info["std"], device=device).view(1, -1, 1, 1)
        self.mean = mean
        self.x = pixels.to(device).float().div(255).sub(mean).div(self.std)  # (B, C, H, W)
        self.display = pixels.permute(0, 2, 3, 1).float().div(255).numpy()  # (B, H, W, C) in [0, 1]
        self.layer = layer or get_model_spec(self.model_name).cam_layer
        self.top_k = top_k
        with torch.no_grad():
            self.probs = self.model(self.x).float().softmax(1)  # (B, K)
        self.target = (
            self.probs.argmax(1) if target is None else torch.full((len(names),), target, device=device)
        )

    def _need_layer(self) -> str:
        if self.layer is None:
            raise ConfigError(
                f"model '{self.model_name}' has no spatial layer (no cam_layer in its spec): Grad-CAM, "
                "feature maps and the deconvnet apply to models with convolutions or patch tokens"
            )
        return self.layer

    def titles(self) -> list[str]:
        """Per image: its name, then the class explained and its probability (and the prediction, if other)."""
        out = []
        for b, name in enumerate(self.names):
            c, pred = int(self.target[b]), int(self.probs[b].argmax())
            line = f"{self.classes[c]}: {100 * float(self.probs[b, c]):.1f}%"
            if pred != c:
                line += f" (predicted {self.classes[pred]})"
            out.append(f"{Path(name).name}\n{line}")
        return out

    def suptitle(self, what: str) -> str:
        return f"{self.model_name}: {what}"

    def heat(self, out: Path, method: str, maps: torch.Tensor, label: str, **kw: Any) -> list[Path]:
        titles = self.titles()
        if "vmax" not in kw:  # a map scaled to its own range: say so where there is nothing to scale
            titles = [t + (" - map all 0" if not m.any() else "") for t, m in zip(titles, maps)]
        fig = render.heatmap_figure(self.display, maps.cpu().numpy(), titles, self.suptitle(label), **kw)
        return [
            render.save_png(fig, out / f"{method}.png"),
            _save_npy(out / f"{method}.npy", maps.cpu().numpy()),
        ]

    def gradcam(self, out: Path) -> list[Path]:
        layer = self._need_layer()
        maps = grad_cam(self.model, self.x, layer, self.target)
        return self.heat(out, "gradcam", maps, f"Grad-CAM at {layer}")

    def gradcam_pp(self, out: Path) -> list[Path]:
        layer = self._need_layer()
        maps = grad_cam_pp(self.model, self.x, layer, self.target)
        return self.heat(out, "gradcam++", maps, f"Grad-CAM++ at {layer}")

    def occlusion(self, out: Path) -> list[Path]:
        grey = ((0.5 - self.mean) / self.std).view(-1)  # mid-grey in the model's input space, (C,)
        maps = occlusion(self.model, self.x, self.target, fill=grey)
        return self.heat(
            out,
            "occlusion",
            maps,
            "occlusion (grey square)",
            vmin=0.0,
            vmax=1.0,
            cmap="jet_r",
            colorbar="p(class), square here",
        )

    def deconvnet(self, out: Path) -> list[Path]:
        layer = self._need_layer()
        proj = deconvnet(self.model, self.x, layer, top_k=self.top_k)
        B, k = proj.channels.shape
        tiles, titles = [], []
        for b in range(B):
            tiles.append(self.display[b])
            titles.append(f"{Path(self.names[b]).name}")
            for j in range(k):
                r = proj.images[b, j].permute(1, 2, 0).cpu().numpy()  # (H, W, C)
                tiles.append(
                    render.to_display(
                        r.mean(-1, keepdims=True) if r.shape[-1] not in (1, 3) else r, symmetric=True
                    )
                )
                titles.append(f"map {int(proj.channels[b, j])}")
        fig = render.tile_figure(
            _stack(tiles), titles, self.suptitle(f"deconvnet: top-{k} maps of {layer}"), columns=k + 1
        )
        return [
            render.save_png(fig, out / "deconvnet.png"),
            _save_npy(out / "deconvnet.npy", proj.images.cpu().numpy()),
        ]

    def guided_backprop(self, out: Path) -> list[Path]:
        grads = guided_backprop(self.model, self.x, self.target)  # (B, C, H, W)
        tiles, titles = [], []
        for b, title in enumerate(self.titles()):
            g = grads[b].permute(1, 2, 0).cpu().numpy()
            tiles += [
                self.display[b],
                render.to_display(g if g.shape[-1] in (1, 3) else g.mean(-1, keepdims=True), symmetric=True),
            ]
            titles += title.split("\n")
        fig = render.tile_figure(_stack(tiles), titles, self.suptitle("guided backpropagation"), columns=2)
        return [
            render.save_png(fig, out / "guided-backprop.png"),
            _save_npy(out / "guided-backprop.npy", grads.cpu().numpy()),
        ]

    def filters(self, out: Path) -> list[Path]:
        w = first_layer_filters(self.model)[:64]  # (K, C, kh, kw)
        tiles = [render.to_display(f.permute(1, 2, 0).numpy()) for f in w]
        tiles = [t if t.shape[-1] in (1, 3) else t.mean(-1, keepdims=True) for t in tiles]
        fig = render.tile_figure(
            _stack(tiles),
            None,
            self.suptitle(f"first-layer filters ({w.shape[2]}x{w.shape[3]}, {len(w)} shown)"),
        )
        return [render.save_png(fig, out / "filters.png"), _save_npy(out / "filters.npy", w.numpy())]

    def feature_maps(self, out: Path) -> list[Path]:
        layer = self._need_layer()
        maps = feature_maps(self.model, self.x, layer)  # (B, K, h, w)
        k = min(8, maps.shape[1])
        tiles, titles = [], []
        for b in range(maps.shape[0]):
            strongest = maps[b].flatten(1).mean(1).topk(k).indices  # the maps most active on average
            tiles.append(self.display[b])
            titles.append(Path(self.names[b]).name)
            for c in strongest.tolist():
                tiles.append(render.to_display(maps[b, c].cpu().numpy())[..., None])
                titles.append(f"map {c}")
        fig = render.tile_figure(
            _stack(tiles), titles, self.suptitle(f"feature maps of {layer} (strongest {k})"), columns=k + 1
        )
        return [
            render.save_png(fig, out / "feature-maps.png"),
            _save_npy(out / "feature-maps.npy", maps.cpu().numpy()),
        ]

    def attention(self, out: Path) -> list[Path]:
        try:
            maps = class_attention(self.model, self.x).mean(1)  # (B, h, w), heads averaged
            label = "class-token attention, last block"
        except ConfigError:
            windows = window_attention(self.model, self.x)  # raises for a model without windows
            finest = max(m.shape[-2] * m.shape[-1] for m in windows)
            maps = [m for m in windows if m.shape[-2] * m.shape[-1] == finest][-1]  # last block of stage 1
            label = "per-window attention, last block of the first stage"
        return self.heat(out, "attention", maps, label)

    def rollout(self, out: Path) -> list[Path]:
        maps = attention_rollout(self.model, self.x)
        return self.heat(out, "rollout", maps, "attention rollout")


def _stack(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles (h, w, 1|3) as one array (N, H, W, C): smaller ones enlarged to the largest by repeating pixels
    (nearest neighbour, so a 10x10 map keeps its cells), grey ones repeated to colour where others are."""
    c = max(t.shape[-1] for t in tiles)
    H = max(t.shape[0] for t in tiles)
    W = max(t.shape[1] for t in tiles)
    out = np.zeros((len(tiles), H, W, c))
    for i, t in enumerate(tiles):
        rows = np.arange(H) * t.shape[0] // H  # nearest source row of each output row
        cols = np.arange(W) * t.shape[1] // W
        t = t[rows][:, cols]
        out[i] = t if t.shape[-1] == c else np.repeat(t, c, -1)
    return out


_CALLS = {
    "gradcam": _Explainer.gradcam,
    "gradcam++": _Explainer.gradcam_pp,
    "occlusion": _Explainer.occlusion,
    "deconvnet": _Explainer.deconvnet,
    "guided-backprop": _Explainer.guided_backprop,
    "filters": _Explainer.filters,
    "feature-maps": _Explainer.feature_maps,
    "attention": _Explainer.attention,
    "rollout": _Explainer.rollout,
}


def explain_run(
    run: str | Path | LoadedRun,
    inputs: ImageInput | Sequence[ImageInput],
    *,
    methods: Sequence[str] = ("all",),
    layer: str | None = None,
    target: str | int | None = None,
    out_dir: str | Path | None = None,
    which: str = "best",
    device: str = "auto",
    top_k: int = 4,
) -> ExplainResult:
    """Explain a run's predictions on ``inputs`` with ``methods`` (names of :data:`METHODS`, or ``all``).

    ``layer`` overrides the model's default target layer (its ``ModelSpec.cam_layer``); ``target`` is the
    class to explain, by name or index (default: each image's predicted class); ``out_dir`` defaults to
    ``RUN/explain``; ``top_k`` is the number of feature maps the deconvnet projects per image.
    """
    unknown = [m for m in methods if m != "all" and m not in METHODS]
    if unknown:
        raise unknown_name("explain method", unknown[0], (*METHODS, "all"))
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    chosen = list(METHODS) if "all" in methods else list(dict.fromkeys(methods))
    dev = resolve_device(device)
    loaded = run if isinstance(run, LoadedRun) else load_run(run, dev, which=which)
    info = loaded.info
    names, pixels = load_images(inputs, info["in_chans"], info["image_size"])
    if len(names) > MAX_IMAGES:
        raise ConfigError(
            f"{len(names)} images: explain at most {MAX_IMAGES} at a time, so the pictures stay readable"
        )
    out = Path(out_dir) if out_dir is not None else Path(loaded.weights).parent / "explain"
    ex = _Explainer(loaded, names, pixels, layer, _resolve_class(target, loaded.classes), top_k, dev)
    if ex.layer is not None:  # an unknown name fails before any work, listing valid ones
        ex.layer = canonical_name(ex.model, ex.layer)
    result = ExplainResult(out)
    for method in chosen:
        try:
            result.files += _CALLS[method](ex, out)
        except ConfigError as e:
            if "all" not in methods:
                raise
            result.skipped[method] = str(e)
            log.debug("skipped %s: %s", method, e)
    if not result.files:
        raise ConfigError(
            f"no method applies to model '{ex.model_name}': {next(iter(result.skipped.values()))}"
        )
    summary = {
        "run": str(Path(loaded.weights).parent),
        "model": ex.model_name,
        "layer": ex.layer,
        "images": [
            {
                "input": name,
                "predicted": ex.classes[int(ex.probs[b].argmax())],
                "predicted_prob": float(ex.probs[b].max()),
                "explained": ex.classes[int(ex.target[b])],
                "explained_prob": float(ex.probs[b, ex.target[b]]),
            }
            for b, name in enumerate(names)
        ],
        "files": [p.name for p in result.files],
        "skipped": result.skipped,
    }
    atomic_write_json(out / "explain.json", summary)
    result.files.append(out / "explain.json")
    return result
