"""Projections of activations back to pixel space: the deconvnet and guided backpropagation.

Deconvnet: Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", 2013, arXiv:1311.2901,
Section 2.1. For one activation of a chosen layer (all others set to zero), the layers below are run in
reverse: max pooling is undone with the *switches* recorded in the forward pass (the position of each
maximum), a ReLU keeps the reconstruction positive, and a convolution is undone with its filters transposed
(``conv_transpose2d`` of the same weights, no bias). This needs a plain stack of convolutions, ReLUs and max
pools (``zfnet``, ``alexnet``, ``vgg``, ``lenet5_modern``): the modules before the layer must sit in one
``nn.Sequential`` (a model's ``features``); local response normalisation, dropout and identities are passed
over, as the paper's deconvnet does.

Departure: where pooling windows overlap (AlexNet's and ZFNet's 3x3 stride-2 pools) one input can be the
maximum of two windows; we add both contributions (the exact transpose of pooling) instead of keeping one.

Guided backpropagation: Springenberg, Dosovitskiy, Brox, Riedmiller, "Striving for Simplicity: The All
Convolutional Net", 2014, arXiv:1412.6806, Section 3.4: the gradient of the class score with respect to the
image where every ReLU passes back only positive gradients at positions whose input was positive. It works
on any network whose ReLUs are ``nn.ReLU`` modules; they are changed through forward hooks that are removed
afterwards, so an in-place ReLU's saved output is never overwritten.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.explain.cam import _logits
from imgcls.explain.hooks import resolve_layer, resolve_targets

__all__ = ["Projection", "deconvnet", "guided_backprop"]

# What the deconvnet can run in reverse; anything else in the path is refused by name.
_PASS = (nn.Identity, nn.Dropout, nn.LocalResponseNorm)
_PLAIN = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, *_PASS)


class Projection(NamedTuple):
    """Deconvnet output: ``images`` (B, k, C, H, W), the projection of the strongest activation of each of
    the ``channels`` (B, k) of the layer, strongest first; ``activations`` (B, k) their values."""

    images: torch.Tensor
    channels: torch.Tensor
    activations: torch.Tensor


def _plain_path(model: nn.Module, layer: str) -> tuple[nn.Sequential, list[nn.Module]]:
    """The ``nn.Sequential`` holding ``layer`` and its modules up to ``layer`` (all of them when ``layer`` is
    the Sequential itself); ConfigError where the path is not plain conv-ReLU-pool."""
    module = resolve_layer(model, layer)
    if isinstance(module, nn.Sequential):
        seq, path = module, list(module)
    else:
        parent_name, _, index = layer.rpartition(".")
        parent = resolve_layer(model, parent_name) if parent_name else model
        if not isinstance(parent, nn.Sequential) or not index.isdigit():
            raise ConfigError(
                f"layer '{layer}' is not inside an nn.Sequential: the deconvnet needs a plain stack of "
                "convolutions, ReLUs and max pools (e.g. 'features.9' of zfnet, alexnet, vgg, lenet5_modern)"
            )
        seq, path = parent, list(parent)[: int(index) + 1]
    for m in path:
        if not (isinstance(m, _PLAIN) or _is_lrn(m)):
            raise ConfigError(
                f"the deconvnet cannot invert {type(m).__name__} (before layer '{layer}'): it runs on plain "
                "conv-ReLU-max-pool networks such as zfnet, alexnet, vgg and lenet5_modern; use guided "
                "backpropagation or Grad-CAM for this model"
            )
    return seq, path


def _is_lrn(m: nn.Module) -> bool:
    # Local response normalisation, torch's or the zoo's grouped one: passed over in reverse (paper Sec. 2.1)
    return isinstance(m, nn.LocalResponseNorm) or type(m).__name__ == "LocalResponseNorm"


def _unpool(r: torch.Tensor, switches: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Send each pooled value back to the position its maximum came from; (B, C, h, w) -> ``size``."""
    out = torch.zeros(size[0], size[1], size[2] * size[3], dtype=r.dtype, device=r.device)
    out.scatter_add_(2, switches.flatten(2), r.flatten(2))  # overlapping windows: contributions add up
    return out.view(size)


def _transposed_conv(r: torch.Tensor, conv: nn.Conv2d, size: torch.Size) -> torch.Tensor:
    """Undo ``conv`` with its filters transposed (no bias), to the input size ``size`` (B, C, H, W)."""
    pad = conv.padding
    if isinstance(pad, str):
        raise ConfigError(f"the deconvnet needs numeric padding, not padding='{pad}'")
    expect = [
        (r.shape[2 + i] - 1) * conv.stride[i] - 2 * pad[i] + conv.dilation[i] * (conv.kernel_size[i] - 1) + 1
        for i in range(2)
    ]
    extra = tuple(size[2 + i] - expect[i] for i in range(2))  # rows/columns the forward's stride dropped
    return F.conv_transpose2d(r, conv.weight, None, conv.stride, pad, extra, conv.groups, conv.dilation)


@torch.no_grad()
def deconvnet(model: nn.Module, images: torch.Tensor, layer: str, *, top_k: int = 4) -> Projection:
    """Project the ``top_k`` strongest feature maps of ``layer`` for each of normalised ``images``
    (B, C, H, W) back to pixel space: for each map, its single largest activation, all else zero."""
    seq, path = _plain_path(model, layer)
    captured: list[torch.Tensor] = []
    handle = seq.register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0]))
    try:
        model(images)  # the input of the Sequential (LeNet pads 28 -> 32 before it)
    finally:
        handle.remove()
    if not captured:
        raise ConfigError(f"layer '{layer}' is not used by the model's forward pass: pick another layer")
    h = captured[0]
    record: list[tuple[nn.Module, torch.Size, torch.Tensor | None]] = []
    for m in path:
        size, switches = h.shape, None
        if isinstance(m, nn.MaxPool2d):
            h, switches = F.max_pool2d(
                h, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True
            )
        elif isinstance(m, nn.ReLU):
            h = F.relu(h)  # never in place: ``h`` may still be needed
        elif isinstance(m, nn.Conv2d):
            h = m(h)
        record.append((m, size, switches))  # LRN, dropout (eval) and identities change nothing in reverse
        if _is_lrn(m) or isinstance(m, _PASS):
            h = m(h)
    if h.ndim != 4:
        raise ConfigError(f"layer '{layer}' has no feature maps (output {tuple(h.shape)}): pick a conv layer")
    B, C = h.shape[:2]
    k = min(top_k, C)
    strength = h.flatten(2).amax(2)  # (B, C): each map's largest activation
    acts, channels = strength.topk(k, dim=1)  # (B, k)
    peak = h.flatten(2).argmax(2).gather(1, channels)  # (B, k): where each chosen map peaks
    start = torch.zeros(B, k, *h.shape[1:], dtype=h.dtype, device=h.device)  # (B, k, C, h, w)
    flat = start.view(B, k, C, -1)
    b_idx, j_idx = torch.meshgrid(torch.arange(B), torch.arange(k), indexing="ij")
    flat[b_idx, j_idx, channels, peak] = acts
    r = start.flatten(0, 1)  # (B*k, C, h, w): one reconstruction per chosen activation
    for m, size, switches in reversed(record):
        size = torch.Size((B * k, *size[1:]))
        if isinstance(m, nn.MaxPool2d):
            assert switches is not None
            r = _unpool(r, switches.repeat_interleave(k, dim=0), size)
        elif isinstance(m, nn.ReLU):
            r = F.relu(r)
        elif isinstance(m, nn.Conv2d):
            r = _transposed_conv(r, m, size)
    r = r.view(B, k, *r.shape[1:])  # (B, k, C_in, H', W')
    H, W = images.shape[-2:]
    top, left = (r.shape[-2] - H) // 2, (r.shape[-1] - W) // 2  # a model that padded its input: centre crop
    return Projection(r[..., top : top + H, left : left + W], channels, acts)


class _GuidedReLU(torch.autograd.Function):
    """Identity forward on a ReLU's output; backward passes positive gradients where that output is > 0."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, out: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(out > 0)
        return out.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (positive,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad.clamp(min=0) * positive


def guided_backprop(
    model: nn.Module, images: torch.Tensor, target: int | list[int] | torch.Tensor | None = None
) -> torch.Tensor:
    """Guided backpropagation of class ``target`` (default: the predicted one) to normalised ``images``:
    (B, C, H, W), the modified gradient of the class logit with respect to the pixels."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ConfigError(
            f"{type(model).__name__} has no nn.ReLU modules, which guided backpropagation changes (ViT, Swin "
            "and CoAtNet use GELU): use Grad-CAM or attention rollout for it"
        )
    # The original ReLU's own backward also multiplies by (out > 0), which the guided one already did.
    handles = [m.register_forward_hook(lambda m, i, out: _GuidedReLU.apply(out)) for m in relus]
    x = images.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            logits = _logits(model(x))
            targets = resolve_targets(logits.detach(), target)
            (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
    finally:
        for h in handles:
            h.remove()
    return grad
