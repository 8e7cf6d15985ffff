"""Give a module's ``state_dict()`` the parameter names of a published checkpoint layout.

Shared blocks have one set of attribute names (``PatchEmbed.proj``, ``Attention.qkv``), while published
checkpoints use others (torchvision's ViT calls the patch projection ``conv_proj`` and the fused
query/key/value weight ``in_proj_weight``, as ``nn.MultiheadAttention`` does). Rather than write a second copy
of a block only to rename its parameters, :func:`use_checkpoint_names` registers a pair of hooks on the module
that owns both names:

- ``state_dict()`` renames the module's keys to the checkpoint names, keeping their order;
- ``load_state_dict()`` renames checkpoint keys back before loading (the module's own names load as well).

So ``state_dict()`` equals the published layout key for key, and its files load with ``strict=True``.
``named_parameters()`` keeps the module's own names, and so do the missing-key lists of
``load_state_dict(strict=False)``. The hooks are module-level functions bound with :func:`functools.partial`,
so models stay picklable and deep-copyable.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

__all__ = ["use_checkpoint_names"]


def _save_hook(
    to_ckpt: Mapping[str, str], module: nn.Module, state_dict: dict[str, Any], prefix: str, _meta: Any
) -> None:
    # This module's whole subtree was just written, so its keys are the last ones in ``state_dict``: popping
    # and re-inserting them all renames the aliased ones and keeps the order.
    keys = [k for k in state_dict if k.startswith(prefix)]
    for key in keys:
        value = state_dict.pop(key)
        local = key[len(prefix) :]
        state_dict[prefix + to_ckpt.get(local, local)] = value


def _load_hook(
    to_own: Mapping[str, str], module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *_: Any
) -> None:
    for ckpt_local, own_local in to_own.items():
        if prefix + ckpt_local in state_dict:
            state_dict[prefix + own_local] = state_dict.pop(prefix + ckpt_local)


def use_checkpoint_names(module: nn.Module, names: Mapping[str, str]) -> None:
    """Save ``module``'s keys under checkpoint names and accept those names when loading.

    Args:
        module: the module whose local namespace holds both names (for a key of a child, its parent or an
            ancestor; ``load_state_dict`` rejects a top-level name the module has no child for).
        names: ``{own local key: checkpoint local key}``, e.g. ``{"qkv.weight": "in_proj_weight"}``.
    """
    to_ckpt = dict(names)
    to_own = {v: k for k, v in to_ckpt.items()}
    if len(to_own) != len(to_ckpt):
        raise ValueError(f"checkpoint names must be distinct: {names}")
    module.register_state_dict_post_hook(partial(_save_hook, to_ckpt))
    module.register_load_state_dict_pre_hook(partial(_load_hook, to_own))
