"""Class activation maps from gradients: Grad-CAM and Grad-CAM++.

Papers: "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization", Ramprasaath R.
Selvaraju, Michael Cogswell, Abhishek Das, Ramakrishna Vedantam, Devi Parikh, Dhruv Batra, 2016,
arXiv:1610.02391; "Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks", Aditya
Chattopadhyay, Anirban Sarkar, Prantik Howlader, Vineeth N Balasubramanian, 2017, arXiv:1710.11063.

For a layer with activations A (C maps of h x w) and the score y of class c (its logit, before softmax):

- Grad-CAM (Selvaraju et al., Eq. 1-2): weights a_k = mean_ij dy/dA_kij, map ReLU(sum_k a_k A_k).
- Grad-CAM++ (Chattopadhyay et al., Eq. 19 with the exponential score, which gives their closed form):
  alpha_kij = g^2 / (2 g^2 + sum_ab A_kab g^3) with g = dy/dA_kij (0 where the denominator is 0),
  weights w_k = sum_ij alpha_kij ReLU(g_kij), map ReLU(sum_k w_k A_k).

The layer is named as ``model.named_modules()`` names it; each family's default is ``ModelSpec.cam_layer``.
Transformers work the same way once their output is laid out as a map (:func:`imgcls.explain.hooks.to_map`):
ViT's patch tokens without the class token on the patch grid, Swin's channels-last maps, CoAtNet's stages.
The weights' gradients are not touched (only the layer's output is differentiated) and the hook is removed
afterwards, so the model is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.explain.hooks import record, resolve_layer, resolve_targets, to_image, to_map

__all__ = ["grad_cam", "grad_cam_pp", "layer_gradients"]


def _logits(out: object) -> torch.Tensor:
    if isinstance(out, torch.Tensor) and out.ndim == 2:
        return out
    raise ConfigError(
        f"the model returned {type(out).__name__}, not logits (B, classes): call model.eval() first"
    )


def layer_gradients(
    model: nn.Module, images: torch.Tensor, layer: str, target: int | list[int] | torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int] | None]:
    """Activations and gradients of the target class's logit at ``layer``, both as maps (B, C, h, w).

    Returns ``(activations, gradients, targets (B,), frame)``, ``frame`` the (padded) input size the
    model's first convolution saw, or None; ``target`` None explains the
    predicted class. ConfigError when the layer is unused, has no spatial layout, or the score does not
    depend on its spatial positions (a layer after the last one that mixes positions).
    """
    module = resolve_layer(model, layer)
    x = images.detach().clone().requires_grad_(True)  # a graph exists even where the weights are frozen
    hw = (images.shape[-2], images.shape[-1])
    with torch.enable_grad(), record(module, model) as rec:
        logits = _logits(model(x))
    if rec.output is None:
        raise ConfigError(f"layer '{layer}' is not used by the model's forward pass: pick another layer")
    acts = to_map(rec.output, hw, module)  # (B, C, h, w), before the gradient so a bad layout fails first
    targets = resolve_targets(logits.detach(), target)
    score = logits.gather(1, targets[:, None]).sum()  # images are independent: one backward for all
    (grad,) = torch.autograd.grad(score, rec.output, allow_unused=True)
    grad_map = None if grad is None else to_map(grad, hw, module)
    # A gradient that reaches the layer but none of its positions (only a ViT's class token): no spatial
    # layer after this one mixes the positions into the logits. (All zero everywhere is a zero head.)
    if grad_map is None or (grad.any() and not grad_map.any()):
        raise ConfigError(
            f"the class score does not depend on the positions of layer '{layer}' (no spatial layer after "
            "it mixes them into the logits, e.g. a ViT's last block, whose patch tokens the head never "
            "reads): pick an earlier layer"
        )
    return acts.detach(), grad_map, targets, rec.frame


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    target: int | list[int] | torch.Tensor | None = None,
    *,
    upsample: bool = True,
) -> torch.Tensor:
    """Grad-CAM maps of normalised ``images`` (B, C, H, W) at ``layer`` for class ``target`` (default: the
    predicted one): (B, H, W), or (B, h, w) at the layer's resolution with ``upsample=False``. Non-negative,
    not rescaled."""
    acts, grads, _, frame = layer_gradients(model, images, layer, target)
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1): a_k, the pooled gradients
    cam = F.relu((weights * acts).sum(1))  # (B, h, w)
    # bilinear to the input resolution, as the Grad-CAM paper does
    return to_image(cam, (images.shape[-2], images.shape[-1]), frame) if upsample else cam


def grad_cam_pp(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    target: int | list[int] | torch.Tensor | None = None,
    *,
    upsample: bool = True,
) -> torch.Tensor:
    """Grad-CAM++ maps, same arguments and shapes as :func:`grad_cam`."""
    acts, grads, _, frame = layer_gradients(model, images, layer, target)
    g2, g3 = grads.pow(2), grads.pow(3)
    denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3  # (B, C, h, w)
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), 0.0)
    weights = (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    cam = F.relu((weights * acts).sum(1))  # (B, h, w)
    # bilinear to the input resolution, as the Grad-CAM paper does
    return to_image(cam, (images.shape[-2], images.shape[-1]), frame) if upsample else cam
