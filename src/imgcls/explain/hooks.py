"""What every explanation method shares: finding a layer by name, recording its output without changing the
model, laying that output out as a (B, C, h, w) map, and choosing the class to explain.

Models are used through their contract only: ``named_modules()`` names the layers, ``forward(x)`` gives the
logits. A layer's output may be a feature map (B, C, h, w) (CNNs, CoAtNet), a channels-last map (B, h, w, C)
(Swin), or tokens (B, T, C) on a patch grid, possibly with a class token first (ViT); :func:`to_map` turns each
into (B, C, h, w).
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections.abc import Iterator

import torch
from torch import nn

from imgcls.errors import ConfigError

__all__ = [
    "Recorder",
    "layer_names",
    "patch_grid",
    "record",
    "resolve_layer",
    "resolve_targets",
    "to_image",
    "to_map",
]


def layer_names(model: nn.Module, depth: int = 2) -> list[str]:
    """The names of ``model``'s modules up to ``depth`` dots deep (``layer4``, ``features.12``), in order."""
    return [n for n, _ in model.named_modules() if n and n.count(".") < depth]


def _walk(model: nn.Module, name: str) -> nn.Module | None:
    """The module at a dotted path; a component may be a negative index among a container's children
    (``encoder.layers.-1.ln_1``: the last block's, whatever the depth)."""
    module = model
    for part in name.split("."):
        children = dict(module.named_children())
        if part in children:
            module = children[part]
        elif part.lstrip("-").isdigit() and part.startswith("-") and -len(children) <= int(part):
            module = list(children.values())[int(part)]
        else:
            return None
    return module


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name`` (as ``named_modules()`` spells it; a component may be a negative index,
    ``features.-1``); ConfigError listing valid names."""
    if not name:
        raise ConfigError(
            f"no layer given for {type(model).__name__}: name one of {', '.join(layer_names(model))}"
        )
    found = _walk(model, name)
    if found is not None:
        return found
    shallow = layer_names(model)
    close = difflib.get_close_matches(name, [n for n, _ in model.named_modules() if n], n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        f"unknown layer '{name}' in {type(model).__name__}: {hint}valid layers include {', '.join(shallow)} "
        "(any name of model.named_modules(); 'imgcls summary' lists them)"
    )


def canonical_name(model: nn.Module, name: str) -> str:
    """``name`` as ``named_modules()`` spells it (negative indices resolved)."""
    module = resolve_layer(model, name)
    return next(n for n, m in model.named_modules() if m is module)


class Recorder:
    """The output of one layer, recorded in a forward pass (:func:`record`), and the spatial size of what
    the model's first convolution saw (``frame``): larger than the image where the model pads its input
    (LeNet-5 centres 28x28 images in 32x32), so maps cover the padded frame."""

    output: torch.Tensor | None = None
    frame: tuple[int, int] | None = None


@contextlib.contextmanager
def record(layer: nn.Module, model: nn.Module | None = None) -> Iterator[Recorder]:
    """Record ``layer``'s output (and, given ``model``, its input frame) while inside; the hooks are removed
    on exit, whatever happens.

    The model continues with a *clone* of the output, so a later in-place operation (``ReLU(inplace=True)``)
    changes the clone, never the recorded tensor: its values and its gradient stay those of the layer.
    """
    rec = Recorder()

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise ConfigError(
                f"layer {type(module).__name__} returns a {type(output).__name__}, not a tensor: pick a layer "
                "whose output is a feature map"
            )
        rec.output = output
        return output.clone()

    def first_input(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if rec.frame is None and inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].ndim == 4:
            rec.frame = (inputs[0].shape[-2], inputs[0].shape[-1])

    first_conv = (
        next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None) if model is not None else None
    )
    handles = [layer.register_forward_hook(hook)]
    if first_conv is not None:
        handles.append(first_conv.register_forward_pre_hook(first_input))
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


def patch_grid(n: int, image_hw: tuple[int, int]) -> tuple[int, int] | None:
    """(h, w) with h * w == n and h / w the image's aspect ratio, or None."""
    H, W = image_hw
    h = max(1, round(math.sqrt(n * H / W)))
    w = n // h
    return (h, w) if h * w == n and abs(h / w - H / W) <= 0.5 * H / W else None


def _aspect_fits(h: int, w: int, image_hw: tuple[int, int]) -> bool:
    H, W = image_hw
    return abs(h * W - w * H) <= max(H, W)  # within one cell of the image's ratio


def _layer_norm_width(layer: nn.Module | None) -> set[int]:
    if layer is None:
        return set()
    return {m.normalized_shape[-1] for m in layer.modules() if isinstance(m, nn.LayerNorm)}


def to_map(t: torch.Tensor, image_hw: tuple[int, int], layer: nn.Module | None = None) -> torch.Tensor:
    """A layer output as a spatial map (B, C, h, w).

    - (B, C, h, w): as is (CNNs, CoAtNet's stages).
    - (B, h, w, C), channels last (Swin): permuted. Told apart from the first layout by which pair of axes
      has the image's aspect ratio; where both have (h == w == C), by a LayerNorm over the last axis in
      ``layer`` (Swin's blocks normalise channels last).
    - (B, T, C) tokens (ViT): T is h * w patches on the image's grid, or 1 + h * w with a class token first,
      which is dropped; the patches are in row-major order.

    ConfigError when the output has no spatial layout (a flattened vector, the logits).
    """
    if t.ndim == 4:
        nchw = _aspect_fits(t.shape[2], t.shape[3], image_hw)
        nhwc = _aspect_fits(t.shape[1], t.shape[2], image_hw)
        if nhwc and (not nchw or t.shape[3] in _layer_norm_width(layer)):
            return t.permute(0, 3, 1, 2)  # (B, h, w, C) -> (B, C, h, w)
        if nchw:
            return t
    elif t.ndim == 3:
        T = t.shape[1]
        for prefix in (0, 1):  # no class token, or one first
            grid = patch_grid(T - prefix, image_hw) if T > prefix else None
            if grid is not None:
                tokens = t[:, prefix:]  # (B, h*w, C)
                return tokens.transpose(1, 2).reshape(t.shape[0], t.shape[2], *grid)  # -> (B, C, h, w)
    raise ConfigError(
        f"the layer's output {tuple(t.shape)} has no spatial layout on a {image_hw[0]}x{image_hw[1]} image: "
        "pick an earlier layer (a feature map or patch tokens), e.g. the model's default cam_layer"
    )


def resolve_targets(logits: torch.Tensor, target: int | torch.Tensor | list[int] | None) -> torch.Tensor:
    """The class index per image (B,): the predicted class when ``target`` is None, else ``target``."""
    B, K = logits.shape
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(B)
    if t.numel() != B:
        raise ConfigError(f"{t.numel()} targets for {B} images: give one class index, or one per image")
    if (t < 0).any() or (t >= K).any():
        raise ConfigError(f"class index {t.tolist()} out of range: the model has {K} classes (0..{K - 1})")
    return t


def to_image(
    maps: torch.Tensor, image_hw: tuple[int, int], frame: tuple[int, int] | None = None
) -> torch.Tensor:
    """Maps (B, h, w) resized (bilinear) to the image (B, H, W); a map over a padded ``frame`` is resized to
    the frame and its centre, where the image lies, cut out."""
    H, W = image_hw
    fh, fw = frame if frame is not None and frame[0] >= H and frame[1] >= W else image_hw
    up = torch.nn.functional.interpolate(maps[:, None], size=(fh, fw), mode="bilinear", align_corners=False)
    top, left = (fh - H) // 2, (fw - W) // 2
    return up[:, 0, top : top + H, left : left + W]
