"""CoAtNet: relative position index and bias, stage layouts, down-sampling, small-image form, counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models import create_model
from imgcls.models.coatnet import (
    LAYOUTS,
    VARIANTS,
    CoAtNet,
    CoAtNetConfig,
    MBConvBlock,
    RelativeAttention,
    TransformerBlock,
    relative_position_index,
)

TINY = CoAtNetConfig(depths=(2, 1, 1, 2, 1), dims=(8, 16, 16, 32, 32), head_dim=8)


def test_relative_position_index_covers_the_table_and_is_correct() -> None:
    h, w = 3, 4
    index = relative_position_index(h, w)
    n, table = h * w, (2 * h - 1) * (2 * w - 1)
    assert index.shape == (n, n)
    assert set(index.flatten().tolist()) == set(range(table))  # every offset occurs, nothing outside
    center = (h - 1) * (2 * w - 1) + (w - 1)  # offset (0, 0)
    assert (index.diagonal() == center).all()
    assert (index + index.T == 2 * center).all()  # offset(j, i) = -offset(i, j): mirrored about the center
    for i in range(n):
        for j in range(n):
            dy, dx = i // w - j // w, i % w - j % w
            assert index[i, j] == (dy + h - 1) * (2 * w - 1) + (dx + w - 1)


def test_relative_position_index_of_a_smaller_grid_uses_the_central_offsets() -> None:
    full = relative_position_index(4, 4)
    small = relative_position_index(2, 2, table_size=(4, 4))
    # Tokens (0,0),(0,1),(1,0),(1,1) of the 4x4 grid are 0, 1, 4, 5: their pairwise offsets are the same.
    sub = [0, 1, 4, 5]
    assert torch.equal(small, full[sub][:, sub])
    with pytest.raises(ConfigError, match="img_size"):
        relative_position_index(5, 4, table_size=(4, 4))


def test_bias_is_added_to_the_logits_before_softmax() -> None:
    torch.manual_seed(0)
    attn = RelativeAttention(8, 16, head_dim=8, table_size=(3, 3))
    nn_init = torch.nn.init
    nn_init.zeros_(attn.qkv.weight)  # q = k = 0: the logits are the bias alone
    nn_init.normal_(attn.relative_position_bias_table)
    x = torch.randn(2, 9, 8)
    _, probs = attn(x, (3, 3), return_attn=True)
    expected = attn.relative_position_bias(3, 3).softmax(-1).expand(2, -1, -1, -1)
    torch.testing.assert_close(probs, expected)
    # The fused path (no maps asked) computes the same output.
    torch.testing.assert_close(attn(x, (3, 3)), attn(x, (3, 3), return_attn=True)[0])


def test_bias_depends_only_on_relative_position() -> None:
    attn = RelativeAttention(8, 8, head_dim=8, table_size=(3, 3))
    torch.nn.init.normal_(attn.relative_position_bias_table)
    bias = attn.relative_position_bias(3, 3)[0]  # (9, 9)
    # (0,0)->(1,1) and (1,1)->(2,2) share the offset (-1, -1); (0,0)->(0,1) and (2,1)->(2,2) share (0, -1).
    assert bias[0, 4] == bias[4, 8] and bias[0, 1] == bias[7, 8]
    assert bias[0, 4] != bias[4, 0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_give_the_block_types_per_stage(layout: str) -> None:
    with torch.device("meta"):
        model = create_model("coatnet_0", layout=layout)
    kinds = {"C": MBConvBlock, "T": TransformerBlock}
    for stage, kind, n in zip(model.stages, layout, (2, 3, 5, 2), strict=True):
        assert len(stage) == n
        assert all(isinstance(block, kinds[kind]) for block in stage)


@pytest.mark.parametrize("layout", ["TCCC", "CTCT", "CCT", "CCTX"])
def test_invalid_layouts_are_rejected(layout: str) -> None:
    with pytest.raises(ConfigError, match="layout"):
        CoAtNet(CoAtNetConfig((2, 2, 3, 5, 2), (64, 96, 192, 384, 768), layout=layout))


def test_each_stage_halves_the_resolution_at_224() -> None:
    with torch.device("meta"):
        model = create_model("coatnet_0")
        x = model.stem(torch.empty(1, 3, 224, 224))
        sizes = [tuple(x.shape[1:])]
        for stage in model.stages:
            x = stage(x)
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(64, 112, 112), (96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7)]
    tables = [
        m.relative_position_bias_table.shape for m in model.modules() if isinstance(m, RelativeAttention)
    ]
    assert tables == [(12, 27 * 27)] * 5 + [(24, 13 * 13)] * 2  # heads = width / 32


@pytest.mark.parametrize("size", [28, 32])
def test_small_input_transformer_stages_see_4x4_and_2x2(size: int) -> None:
    torch.manual_seed(0)
    model = CoAtNet(TINY, num_classes=10, in_chans=1, small_input=True).eval()
    maps = model.attention_maps(torch.randn(2, 1, size, size))
    # CCTT: S3 (2 blocks) on a 4x4 grid, S4 (1 block) on 2x2; heads = width / head_dim = 4.
    assert [m.shape for m in maps] == [(2, 4, 16, 16)] * 2 + [(2, 4, 4, 4)]
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 4, 16))
    tables = [
        m.relative_position_bias_table.shape for m in model.modules() if isinstance(m, RelativeAttention)
    ]
    assert tables == [(4, 7 * 7)] * 2 + [(4, 3 * 3)]
    assert all(
        m.last_attn is None and not m.keep_attn for m in model.modules() if isinstance(m, RelativeAttention)
    )


def test_larger_input_than_the_tables_is_a_clear_error() -> None:
    model = CoAtNet(TINY, num_classes=10, small_input=True)
    with pytest.raises(ConfigError, match="img_size"):
        model(torch.randn(1, 3, 64, 64))
    assert CoAtNet(TINY, num_classes=10, small_input=True, img_size=64)(torch.randn(1, 3, 64, 64)).shape == (
        1,
        10,
    )


def test_counts_with_the_pre_logits_layer_round_to_the_paper_figures() -> None:
    for name, v in VARIANTS.items():
        d4 = v.cfg.dims[-1]
        with_head = v.num_params + d4 * d4 + d4  # Linear(D4, D4) with bias
        assert with_head / 1e6 == pytest.approx(v.paper_params_m, rel=0.01), name
        assert v.num_params / 1e6 == pytest.approx(v.paper_params_m, rel=0.025), name  # 0.9-2.2 % under


def test_pre_logits_layer_is_off_by_default_and_makes_25_036_820() -> None:
    with torch.device("meta"):
        plain = create_model("coatnet_0")
        hidden = create_model("coatnet_0", head_hidden=True)
    assert isinstance(plain.pre_logits, nn.Identity)
    assert sum(p.numel() for p in plain.parameters()) == VARIANTS["coatnet_0"].num_params == 24_446_228
    assert [type(m) for m in hidden.pre_logits] == [nn.Linear, nn.Tanh]
    assert sum(p.numel() for p in hidden.parameters()) == 24_446_228 + 768 * 768 + 768 == 25_036_820
