"""Swin-specific behaviour: shifted windows and their mask, relative position index, patch merging, layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models import create_model, load_pretrained
from imgcls.models.swin import (
    MASK_VALUE,
    PatchMerging,
    ShiftedWindowAttention,
    SwinConfig,
    SwinTransformer,
    merge_patches,
    relative_position_index,
    shifted_window_mask,
)

from .conftest import layout, torchvision_layout


def _tiny() -> SwinTransformer:
    """Two stages of two 16-wide blocks, 2 px patches, 2 x 2 windows: fast enough for any test."""
    cfg = SwinConfig(
        embed_dim=16, depths=(2, 2), num_heads=(2, 4), patch_size=2, window_size=2, drop_path_rate=0.0
    )
    return SwinTransformer(cfg, num_classes=5, in_chans=3)


def test_state_dict_layout_is_torchvision_swin_t() -> None:
    expected = torchvision_layout("swin_t")
    with torch.device("meta"):
        model = create_model("swin_t")
    state = model.state_dict()
    assert layout(model) == expected
    assert state["features.1.0.attn.relative_position_index"].dtype == torch.int64


def test_relative_position_index_of_a_2x2_window() -> None:
    # Tokens (row, col): 0=(0,0) 1=(0,1) 2=(1,0) 3=(1,1); entry (i, j) = (dr + 1) * 3 + (dc + 1), d = i - j.
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    index = relative_position_index(2)
    assert index.dtype == torch.int64
    assert torch.equal(index, expected.flatten())
    assert relative_position_index(7).max() == 13 * 13 - 1  # fills the (2M - 1)^2 table exactly


def test_shift_mask_separates_regions() -> None:
    # 4 x 4 map, 2 x 2 windows, shift 1: after the roll, row / column regions are [0, 2), [2, 3), [3, 4).
    mask = shifted_window_mask((4, 4), 2, (1, 1))
    assert mask.shape == (4, 4, 4)
    assert set(mask.unique().tolist()) == {0.0, MASK_VALUE}
    assert not mask[0].any()  # top-left window: one region, no masking
    m = MASK_VALUE
    # Top-right window: columns 2 and 3 are different regions, both rows the same one.
    assert torch.equal(mask[1], torch.tensor([[0, m, 0, m], [m, 0, m, 0], [0, m, 0, m], [m, 0, m, 0]]))
    # Bottom-right window: four tokens from four regions: each attends only to itself.
    assert torch.equal(mask[3], torch.where(torch.eye(4, dtype=torch.bool), 0.0, m))


def test_shifted_attention_never_mixes_regions() -> None:
    torch.manual_seed(0)
    attn = ShiftedWindowAttention(dim=8, num_heads=2, window_size=4, shift_size=2).eval()
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        _, maps = attn(x, return_attn=True)
        torch.testing.assert_close(maps.sum(-1), torch.ones_like(maps.sum(-1)))
        masked = shifted_window_mask((8, 8), 4, (2, 2)) != 0  # (nW, N, N)
        assert (maps[masked.unsqueeze(1).expand_as(maps)] < 1e-30).all()

        # Perturb the token at (0, 0): after the shift it shares the bottom-right window with tokens from the
        # far side of the image, but only tokens of its own region (rows 0-1, cols 0-1) may see the change.
        y = attn(x)
        x2 = x.clone()
        x2[0, 0, 0] += 10.0
        changed = (attn(x2) - y).abs().amax(-1)[0] > 1e-6  # (8, 8)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(changed, expected)


def test_regular_window_attention_is_local() -> None:
    torch.manual_seed(0)
    attn = ShiftedWindowAttention(dim=8, num_heads=2, window_size=4, shift_size=0).eval()
    x = torch.randn(1, 8, 8, 8)
    x2 = x.clone()
    x2[0, 5, 6] += 10.0  # in the bottom-right window
    with torch.no_grad():
        changed = (attn(x2) - attn(x)).abs().amax(-1)[0] > 1e-6
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[4:, 4:] = True
    assert torch.equal(changed, expected)


def test_relative_position_index_of_a_window_smaller_than_its_table() -> None:
    # A 2 x 2 window in a table sized for 3 x 3 windows (5 x 5 offsets): offset (dr, dc) -> (dr + 2) * 5 + dc + 2.
    expected = torch.tensor([[12, 11, 7, 6], [13, 12, 8, 7], [17, 16, 12, 11], [18, 17, 13, 12]])
    assert torch.equal(relative_position_index(2, 3), expected.flatten())
    with pytest.raises(ConfigError, match="does not fit"):
        relative_position_index(4, 3)


def test_a_map_smaller_than_the_window_shrinks_it_and_drops_the_shift() -> None:
    """The official code's rule: min(H, W) <= M -> one window of side min(H, W), no shift, no padded tokens."""
    torch.manual_seed(0)
    attn = ShiftedWindowAttention(dim=8, num_heads=2, window_size=4, shift_size=2).eval()
    nn.init.normal_(attn.relative_position_bias_table)  # a visible bias
    # What the official code builds for a 3 x 3 map: a 3 x 3 window, unshifted, with its own 5 x 5 table,
    # here holding the central offsets of the 7 x 7 one.
    official = ShiftedWindowAttention(dim=8, num_heads=2, window_size=3, shift_size=0).eval()
    state = attn.state_dict()
    central = [(r + 1) * 7 + c + 1 for r in range(5) for c in range(5)]
    state["relative_position_bias_table"] = state["relative_position_bias_table"][central]
    state["relative_position_index"] = official.relative_position_index
    official.load_state_dict(state)
    x = torch.randn(2, 3, 3, 8)
    with torch.no_grad():
        y, maps = attn(x, return_attn=True)
        torch.testing.assert_close(y, official(x))
    assert y.shape == (2, 3, 3, 8) and maps.shape == (2, 2, 9, 9)  # 9 tokens: no padding joins the window
    with torch.no_grad():  # a 2 x 6 map: 2 x 2 windows, three of them per image
        _, maps = attn(torch.randn(1, 2, 6, 8), return_attn=True)
    assert maps.shape == (3, 2, 4, 4)


def test_small_input_stages_use_the_shrunk_windows() -> None:
    model = create_model("swin_t_patch2_window4_32", num_classes=10).eval()
    with torch.no_grad():
        maps = model.attention_maps(torch.randn(1, 3, 32, 32))
    # Grids 16, 8, 4, 2 in 4 x 4 windows: 16, 4 and 1 windows of 16 tokens, then one 2 x 2 window of 4 tokens.
    windows = [(m.shape[0], m.shape[-1]) for m in maps]
    assert windows == [(16, 16)] * 2 + [(4, 16)] * 2 + [(1, 16)] * 6 + [(1, 4)] * 2


def test_patch_merging_halves_resolution_and_doubles_channels() -> None:
    x = torch.arange(16.0).reshape(1, 4, 4, 1)  # value = 4 * row + col
    merged = merge_patches(x)
    assert merged.shape == (1, 2, 2, 4)
    # torchvision's order: (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col).
    assert merged[0, 0, 0].tolist() == [0.0, 4.0, 1.0, 5.0]
    assert merged[0, 1, 1].tolist() == [10.0, 14.0, 11.0, 15.0]
    merging = PatchMerging(dim=8)
    assert merging(torch.randn(2, 8, 8, 8)).shape == (2, 4, 4, 16)
    assert merging(torch.randn(2, 7, 7, 8)).shape == (2, 4, 4, 16)  # odd sides padded by one


def test_stages_halve_resolution_and_blocks_alternate_shift() -> None:
    with torch.device("meta"):
        model = create_model("swin_t")
        assert model.forward_features(torch.empty(2, 3, 224, 224)).shape == (2, 7, 7, 768)
    for stage in model.features[1::2]:
        assert [block.attn.shift_size for block in stage] == [0, 3] * (len(stage) // 2)
    assert [len(stage) for stage in model.features[1::2]] == [2, 2, 6, 2]


def test_checkpoint_round_trip_and_attention_maps() -> None:
    torch.manual_seed(0)
    src, dst = _tiny().eval(), _tiny().eval()
    state = src.state_dict()
    assert "features.0.0.weight" in state and "features.0.2.bias" in state
    load_pretrained(dst, state)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))
        maps = src.attention_maps(x)
    # 8 x 8 then 4 x 4 maps in 2 x 2 windows: 2 * 16 and 2 * 4 windows of 4 tokens.
    assert [m.shape for m in maps] == [(32, 2, 4, 4)] * 2 + [(8, 4, 4, 4)] * 2
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]))


def test_small_input_form_fits_28_and_32() -> None:
    with torch.device("meta"):
        model = create_model("swin_t", num_classes=10, in_chans=1, image_size=28)
        assert model.forward_features(torch.empty(2, 1, 28, 28)).shape == (2, 2, 2, 768)
    assert model.cfg.patch_size == 2 and model.cfg.window_size == 4
