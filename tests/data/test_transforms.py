"""Batched augmentation: properties (hypothesis, tiny tensors) and exact checks against naive references."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from imgcls.data.transforms import (
    AUGMENT_PRESETS,
    AugmentConfig,
    augment_batch,
    color_jitter,
    cutmix,
    get_augment,
    mixup,
    normalize,
    random_crop,
    random_erasing,
    random_flip,
    random_resized_crop,
)
from imgcls.errors import ConfigError, UnknownNameError

FAST = settings(max_examples=25, deadline=None)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@st.composite
def batches(draw: st.DrawFn) -> torch.Tensor:
    """A tiny float batch in [0, 1]: (B, C, H, W) with B 1..5, C 1 or 3, H and W 4..9."""
    b, c = draw(st.integers(1, 5)), draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(4, 9)), draw(st.integers(4, 9))
    return torch.rand(b, c, h, w, generator=gen(draw(st.integers(0, 2**16))))


SEEDS = st.integers(0, 2**31)


@FAST
@given(x=batches(), seed=SEEDS, padding=st.integers(0, 3), mode=st.sampled_from(["reflect", "constant"]))
def test_random_crop_is_a_per_sample_translation(x: torch.Tensor, seed: int, padding: int, mode: str) -> None:
    out = random_crop(x, padding, gen(seed), padding_mode=mode)
    assert out.shape == x.shape
    lo = min(x.min().item(), 0.0) if mode == "constant" else x.min().item()
    assert lo <= out.min().item() and out.max().item() <= x.max().item()
    # Each sample is some window of its own padded image (a naive loop is fine in a test).
    padded = F.pad(x, (padding,) * 4, mode=mode)
    h, w = x.shape[2:]
    for i in range(x.shape[0]):
        windows = [
            padded[i, :, dy : dy + h, dx : dx + w]
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
        ]
        assert any(torch.equal(out[i], win) for win in windows)


@FAST
@given(x=batches(), seed=SEEDS)
def test_flip_twice_is_identity_and_flips_or_keeps(x: torch.Tensor, seed: int) -> None:
    once = random_flip(x, gen(seed))
    assert torch.equal(random_flip(once, gen(seed)), x)
    for i in range(x.shape[0]):
        assert torch.equal(once[i], x[i]) or torch.equal(once[i], x[i].flip(2))
    assert torch.equal(random_flip(x, gen(seed), p=0.0), x)
    assert torch.equal(random_flip(x, gen(seed), p=1.0), x.flip(3))


@FAST
@given(x=batches(), seed=SEEDS, p=st.floats(0, 1))
def test_erasing_keeps_values_in_range_and_erases_one_box(x: torch.Tensor, seed: int, p: float) -> None:
    zero = random_erasing(x, p, gen(seed))  # fills with 0: within [min(x.min(), 0), x.max()]
    assert zero.shape == x.shape and zero.min() >= min(x.min().item(), 0) and zero.max() <= x.max()
    noise = random_erasing(x, p, gen(seed), value="random")  # uniform noise in [0, 1)
    assert 0 <= noise.min() and noise.max() <= 1
    changed = (zero != x).any(dim=1)  # (B, H, W); x in [0, 1) is never exactly 0 where it changed
    for i in range(x.shape[0]):
        rows, cols = changed[i].nonzero(as_tuple=True)
        if len(rows):  # the changed pixels are a filled rectangle
            assert changed[i, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    assert torch.equal(random_erasing(x, 0.0, gen(seed)), x)


@FAST
@given(x=batches(), seed=SEEDS)
def test_random_resized_crop_shape_range_and_identity(x: torch.Tensor, seed: int) -> None:
    out = random_resized_crop(x, (5, 7), gen(seed))
    assert out.shape == (*x.shape[:2], 5, 7)
    assert x.min() - 1e-5 <= out.min() and out.max() <= x.max() + 1e-5  # bilinear: convex combinations
    square = x[..., : min(x.shape[2:]), : min(x.shape[2:])]
    same = random_resized_crop(square, square.shape[-1], gen(seed), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(same, square, atol=1e-5, rtol=0)


@FAST
@given(x=batches(), seed=SEEDS, v=st.floats(0, 0.9))
def test_color_jitter_range_identity_and_gray(x: torch.Tensor, seed: int, v: float) -> None:
    out = color_jitter(x, v, v, v, gen(seed))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(color_jitter(x, 0, 0, 0, gen(seed)), x)
    gray = x[:, :1]
    torch.testing.assert_close(color_jitter(gray, 0, 0, 0.9, gen(seed)), gray)  # saturation: no-op on L


@FAST
@given(x=batches(), seed=SEEDS, alpha=st.floats(0.1, 2.0), k=st.integers(2, 7))
def test_mixup_and_cutmix_labels_sum_to_one(x: torch.Tensor, seed: int, alpha: float, k: int) -> None:
    y = F.one_hot(torch.arange(x.shape[0]) % k, k).float()
    for fn in (mixup, cutmix):
        xm, ym = fn(x, y, alpha, gen(seed))
        assert xm.shape == x.shape and ym.shape == y.shape
        torch.testing.assert_close(ym.sum(1), torch.ones(x.shape[0]))
        assert x.min() - 1e-6 <= xm.min() and xm.max() <= x.max() + 1e-6


@FAST
@given(seed=SEEDS, alpha=st.floats(0.2, 2.0))
def test_cutmix_lambda_is_the_true_box_area(seed: int, alpha: float) -> None:
    b, h, w = 4, 9, 7
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, h, w)  # image i is all i
    y = torch.eye(b)
    xm, ym = cutmix(x, y, alpha, gen(seed))
    own = (xm == x).float().mean(dim=(1, 2, 3))  # share of pixels each image kept
    torch.testing.assert_close(ym.diagonal(), own)


@FAST
@given(x=batches(), seed=SEEDS, preset=st.sampled_from(sorted(AUGMENT_PRESETS)))
def test_augment_batch_is_deterministic_per_generator_seed(x: torch.Tensor, seed: int, preset: str) -> None:
    cfg = dataclasses.replace(
        AUGMENT_PRESETS[preset], crop_padding=min(AUGMENT_PRESETS[preset].crop_padding, 3)
    )
    y = torch.arange(x.shape[0]) % 3
    x1, y1 = augment_batch(x, y, 3, cfg, gen(seed))
    x2, y2 = augment_batch(x, y, 3, cfg, gen(seed))
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and x1.shape == x.shape
    if cfg.mixes:
        assert y1.dtype == torch.float32 and y1.shape == (x.shape[0], 3)
        torch.testing.assert_close(y1.sum(1), torch.ones(x.shape[0]))
    else:
        assert torch.equal(y1, y)


def test_normalize_uint8_and_float_agree() -> None:
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    want = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(x, mean, std), want)
    torch.testing.assert_close(normalize(x.float() / 255, mean, std), want)
    assert normalize(x, mean, std).dtype == torch.float32


def test_presets_and_config_validation() -> None:
    assert set(AUGMENT_PRESETS) == {"none", "flip", "light", "standard", "strong"}
    assert AUGMENT_PRESETS["none"] == AugmentConfig() and not AUGMENT_PRESETS["light"].mixes
    assert AUGMENT_PRESETS["flip"] == AugmentConfig(flip=True)
    assert AUGMENT_PRESETS["strong"].mixes and get_augment("light").flip
    with pytest.raises(UnknownNameError, match="light"):
        get_augment("lite")
    with pytest.raises(ConfigError):
        AugmentConfig(erasing=1.5)
    with pytest.raises(ConfigError):
        AugmentConfig(rrc_scale=(0.0, 1.0))
    with pytest.raises(ConfigError, match="reflect padding"):
        random_crop(torch.zeros(1, 1, 3, 3), 3, gen(0))


def test_generator_on_another_device_than_the_batch_is_fine() -> None:
    # Draws happen on the generator's device and move to the batch's: here both CPU, but through that path.
    x = torch.rand(3, 1, 6, 6)
    out, _ = augment_batch(x, torch.zeros(3, dtype=torch.long), 2, AUGMENT_PRESETS["strong"], gen(1))
    assert out.device == x.device
