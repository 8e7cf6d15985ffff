"""Load published checkpoint files (torchvision's layout, or our own runs) into imgcls models.

torchvision's ImageNet checkpoints load with ``strict`` key and shape checks into the families that follow
its layout. Older files use a few legacy names, which are mapped here (see
shared/reference/torchvision_keys/README.md): DenseNet's ``norm.1`` -> ``norm1``, ViT's ``mlp.linear_1`` ->
``mlp.0``, and files without BatchNorm's ``num_batches_tracked``. A checkpoint trained on another number of
input channels is adapted in its input layer (:func:`adapt_input_conv`), as timm adapts RGB checkpoints to grey
or multispectral inputs.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.errors import CheckpointError

__all__ = ["adapt_input_conv", "load_pretrained", "load_state_dict_file", "remap_legacy_keys"]

log = logging.getLogger(__name__)

# (pattern, replacement) applied in order to every key of a loaded file.
_LEGACY_KEYS: list[tuple[re.Pattern[str], str]] = [
    # DenseNet (torchvision < 0.3 files): denselayer1.norm.1.weight -> denselayer1.norm1.weight
    (
        re.compile(
            r"(denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
        ),
        r"\1\2",
    ),
    # ViT: mlp.linear_1 -> mlp.0, mlp.linear_2 -> mlp.3
    (re.compile(r"\.mlp\.linear_1\."), ".mlp.0."),
    (re.compile(r"\.mlp\.linear_2\."), ".mlp.3."),
    # Files saved from a DataParallel / DistributedDataParallel wrapper or torch.compile.
    (re.compile(r"^module\."), ""),
    (re.compile(r"^_orig_mod\."), ""),
]


def remap_legacy_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename legacy keys to the current layout; other keys pass unchanged."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, repl in _LEGACY_KEYS:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """An input layer's weight ``(O, I, *kernel)`` trained on ``I`` channels, made ``(O, in_chans, *kernel)``.

    To one channel the ``I`` filters are summed: exact for a grey image, which the checkpoint would have seen
    as ``I`` equal channels. To more channels they are repeated cyclically and scaled by ``I / in_chans``,
    which keeps the response's scale (and the response itself to equal channels when ``in_chans`` is a
    multiple of ``I``). These are the rules timm's ``adapt_input_conv`` applies.
    """
    if weight.ndim < 3:
        raise CheckpointError(
            f"cannot adapt a weight of shape {tuple(weight.shape)} to {in_chans} input channels: only "
            "convolution weights (out, in, *kernel) can be; give a checkpoint trained on as many channels"
        )
    have = weight.shape[1]
    if have == in_chans:
        return weight
    w = weight.float()
    if in_chans == 1:
        out = w.sum(dim=1, keepdim=True)  # (O, I, k, k) -> (O, 1, k, k)
    else:
        repeats = -(-in_chans // have)  # ceil
        out = w.repeat(1, repeats, *([1] * (w.ndim - 2)))[:, :in_chans] * (have / in_chans)
    return out.to(weight.dtype)


def torch_load_safely(path: str | Path, what: str, fix: str) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain values only, so loading cannot run code. Errors
    are one line: ``what`` names the file ("checkpoint", "training state"), ``fix`` ends a refusal."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # junk, or a pickle naming objects that weights_only refuses
        raise CheckpointError(
            f"cannot read {what} '{path}': it is damaged, or holds objects other than tensors and plain "
            f"values whose loading could run code (refused); {fix}"
        ) from None
    except Exception as e:  # corrupt, truncated, or not a checkpoint at all
        raise CheckpointError(
            f"cannot read {what} '{path}': {type(e).__name__}: {str(e).splitlines()[0]}"
        ) from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or a PyTorch (``.pth`` / ``.pt`` / ``.bin``) state dict, tensors only.

    Loading never runs code from the file: safetensors holds tensors alone, and a PyTorch pickle is loaded
    with ``weights_only=True``; a pickle naming any other object raises :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint '{path}' does not exist: give the path of a .pth or .safetensors file"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # corrupt, truncated, or not a safetensors file at all
            raise CheckpointError(
                f"cannot read checkpoint '{path}': {type(e).__name__}: {str(e).splitlines()[0]}"
            ) from None
    obj = torch_load_safely(path, "checkpoint", "give a .safetensors file or a .pth state dict of tensors")
    for wrapper_key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper_key), dict):
            obj = obj[wrapper_key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"'{path}' holds no state dict of tensors")
    return obj


def load_pretrained(
    model: nn.Module,
    path_or_state: str | Path | Mapping[str, torch.Tensor],
    strict: bool = True,
    *,
    input_keys: Collection[str] = (),
) -> nn.Module:
    """Load a checkpoint into ``model`` after mapping legacy key names; returns the model.

    With ``strict=True`` every key must match (BatchNorm ``num_batches_tracked`` may be missing, as in old
    files), and every shape must match after the model's own load hooks have adapted the state (ViT resizes
    position embeddings trained at another resolution); a mismatch raises :class:`CheckpointError` naming the
    first differing key. On a shape mismatch the tensors that did fit may already have been copied. Extra
    auxiliary-head keys (``aux1.*``, ``aux2.*``) are ignored when the model has no auxiliary heads, as
    torchvision's GoogLeNet does.

    ``input_keys`` name the weights whose second dimension is the model's ``in_chans`` (the first
    convolution's); a checkpoint trained on another number of channels is adapted there by
    :func:`adapt_input_conv`.
    """
    state = (
        load_state_dict_file(path_or_state) if isinstance(path_or_state, (str, Path)) else dict(path_or_state)
    )
    state = remap_legacy_keys(state)
    own = model.state_dict()
    for k in input_keys:
        if k in state and k in own and state[k].shape[1:2] != own[k].shape[1:2]:
            if state[k].shape[:1] + state[k].shape[2:] == own[k].shape[:1] + own[k].shape[2:]:
                log.info("adapting %s from %d to %d input channels", k, state[k].shape[1], own[k].shape[1])
                state[k] = adapt_input_conv(state[k], own[k].shape[1])
    if not any(k.startswith(("aux1.", "aux2.")) for k in own):
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise CheckpointError(
            f"checkpoint does not match the model: {'; '.join(parts)}; is it the right model?"
        )
    for k in own:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = own[k]
    # Shapes are checked by load_state_dict itself, after the model's own load hooks have run (ViT
    # interpolates position embeddings trained at another resolution there).
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        sizes = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        first = sizes[0] if sizes else str(e).splitlines()[0]
        raise CheckpointError(
            f"checkpoint does not match the model: {len(sizes)} shapes differ (first: {first}); "
            "check the model name, num_classes and in_chans"
        ) from None
    log.info("loaded %d tensors into %s", len(state), type(model).__name__)
    return model
