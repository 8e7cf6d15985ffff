"""Fine-tuning helpers built on the model contract: which part is the head, and freezing the rest.

The head is what ``reset_classifier`` replaces, for every family alike: it is found by calling
``reset_classifier`` on a meta-device replica of the model (no memory, no copy of the weights) and naming the
modules that changed. Everything else is the backbone.

A frozen backbone gets no gradients, so the optimizer skips its parameters (no step, no weight decay, no
momentum), and its BatchNorm layers stay in eval mode: they keep normalising with the checkpoint's running
statistics instead of re-estimating them batch by batch under weights that cannot adapt to the change. The
frozen backbone so computes exactly the function it was trained to, which is what timm's ``freeze`` (with
``FrozenBatchNorm2d``) and torchvision's detection backbones do. Unfreezing hands both back to training.
"""

from __future__ import annotations

import copy
from collections.abc import Collection

import torch
from torch import nn

from imgcls.errors import ConfigError

__all__ = ["head_module_names", "head_parameter_names", "set_backbone_frozen"]

# reset_classifier is called with this count on the replica: only which modules it replaces matters.
_ANY_CLASS_COUNT = 2


def _meta_replica(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers live on the meta device (no memory)."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def head_module_names(model: nn.Module) -> set[str]:
    """Names of the outermost modules that ``model.reset_classifier`` replaces (e.g. ``{"fc"}`` for ResNet)."""
    if not callable(getattr(model, "reset_classifier", None)):
        raise ConfigError(
            f"{type(model).__name__} has no reset_classifier, so its head is unknown: "
            "--freeze-backbone and --head-lr-mult need a registered imgcls model"
        )
    replica = _meta_replica(model)
    before = dict(replica.named_modules())
    with torch.device("meta"):
        replica.reset_classifier(_ANY_CLASS_COUNT)  # type: ignore[operator]
    new = {name for name, m in replica.named_modules() if before.get(name) is not m}
    outermost = {n for n in new if not any(n.startswith(p + ".") for p in new if p != n)}
    if not any(
        n == name or name.startswith(n + ".") for n in outermost for name, _ in model.named_parameters()
    ):
        raise ConfigError(
            f"{type(model).__name__}'s output layer has no parameters (reset_classifier replaces none): with "
            "a frozen backbone nothing would train, and there is no head to give its own learning rate"
        )
    return outermost


def _in_head(name: str, head: Collection[str]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in head)


def head_parameter_names(model: nn.Module, head: Collection[str] | None = None) -> set[str]:
    """Names of the parameters of the head (``head``: module names, found by :func:`head_module_names`)."""
    head = head_module_names(model) if head is None else head
    return {name for name, _ in model.named_parameters() if _in_head(name, head)}


def set_backbone_frozen(model: nn.Module, head: Collection[str], frozen: bool) -> int:
    """Freeze (or unfreeze) every parameter outside the ``head`` modules; returns how many tensors are frozen.

    Frozen parameters stop requiring gradients and the BatchNorm layers outside the head go to eval mode.
    Call it after every ``model.train()``, which puts them back in training mode.
    """
    n = 0
    for name, p in model.named_parameters():
        if not _in_head(name, head):
            p.requires_grad_(not frozen)
            n += frozen
    if frozen:
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not _in_head(name, head):
                m.eval()
    return n
