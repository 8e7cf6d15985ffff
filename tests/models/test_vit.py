"""ViT-specific behaviour: torchvision's layout, position-embedding interpolation, zero head, attention maps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.models import create_model, load_pretrained
from imgcls.models.vit import EncoderBlock, VisionTransformer, ViTConfig, resize_pos_embed

from .conftest import layout, torchvision_layout


def _tiny(**kw: object) -> VisionTransformer:
    """A 2-block, 32-wide ViT on 16 px images with 4 px patches (a 4 x 4 grid): fast enough for any test."""
    cfg = ViTConfig(
        **{"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_dim": 64, "img_size": 16, **kw}
    )
    return VisionTransformer(cfg, num_classes=5, in_chans=3)


def test_state_dict_layout_is_torchvision_vit_b_16() -> None:
    expected = torchvision_layout("vit_b_16")
    with torch.device("meta"):
        model = create_model("vit_base_patch16_224")
    assert layout(model) == expected


def test_attention_is_torchvisions_multihead_attention() -> None:
    """Loaded under nn.MultiheadAttention's names, torchvision's attention module computes the same thing."""
    torch.manual_seed(0)
    block = EncoderBlock(dim=32, num_heads=4, mlp_dim=64).eval()
    own = {
        k[len("self_attention.") :]: v
        for k, v in block.state_dict().items()
        if k.startswith("self_attention.")
    }
    assert sorted(own) == ["in_proj_bias", "in_proj_weight", "out_proj.bias", "out_proj.weight"]
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    mha.load_state_dict(own)
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        expected, _ = mha(x, x, x, need_weights=False)
        torch.testing.assert_close(block.self_attention(x), expected)


def test_checkpoint_round_trip_under_torchvision_names() -> None:
    torch.manual_seed(0)
    src, dst = _tiny().eval(), _tiny().eval()
    with torch.no_grad():
        src.heads.head.weight.normal_()  # the zero head would hide a wrong load
    state = src.state_dict()
    assert (
        "conv_proj.weight" in state
        and "encoder.layers.encoder_layer_0.self_attention.in_proj_weight" in state
    )
    load_pretrained(dst, state)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))
    # The model's own names load as well.
    dst.load_state_dict({k: v for k, v in src.named_parameters()})


def test_resize_pos_embed_to_the_same_grid_is_identity() -> None:
    pos = torch.randn(1, 1 + 6 * 6, 8)
    torch.testing.assert_close(resize_pos_embed(pos, (6, 6)), pos, rtol=0, atol=1e-6)


def test_resize_pos_embed_keeps_grid_semantics() -> None:
    """A 4 x 4 grid whose channel 0 grows down the rows and channel 1 along the columns keeps it at 8 x 8."""
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    grid = torch.stack([rows, cols], dim=-1).reshape(1, 16, 2)  # row-major tokens, as PatchEmbed flattens
    cls = torch.tensor([[[7.0, -7.0]]])
    out = resize_pos_embed(torch.cat([cls, grid], dim=1), (8, 8))
    assert out.shape == (1, 1 + 64, 2)
    assert torch.equal(out[:, 0], cls[:, 0])  # the class token's embedding is untouched
    big = out[0, 1:].reshape(8, 8, 2)
    torch.testing.assert_close(big[..., 0], big[:, :1, 0].expand(8, 8))  # channel 0 constant along a row
    torch.testing.assert_close(big[..., 1], big[:1, :, 1].expand(8, 8))  # channel 1 constant down a column
    assert (big[1:, 0, 0] > big[:-1, 0, 0]).all() and (big[0, 1:, 1] > big[0, :-1, 1]).all()
    # The image's centre stays at the centre: the mean position is unchanged (1.5 on a 0..3 grid).
    torch.testing.assert_close(big[..., 0].mean(), torch.tensor(1.5))


def test_model_built_at_32_fine_tunes_at_64() -> None:
    torch.manual_seed(0)
    model = _tiny(img_size=32).eval()  # 8 x 8 grid
    old = model.encoder.pos_embedding.detach().clone()
    state = model.state_dict()

    model.set_image_size(64)
    assert model.grid_size == (16, 16)
    pos = model.encoder.pos_embedding
    assert pos.shape == (1, 1 + 16 * 16, 32)
    torch.testing.assert_close(pos.detach(), resize_pos_embed(old, (16, 16)))
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)

    # Built at 64 from the start, loading the 32 px checkpoint interpolates the same way (load hook).
    fresh = _tiny(img_size=64)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.encoder.pos_embedding.detach(), pos.detach())


def test_other_input_size_interpolates_on_the_fly() -> None:
    torch.manual_seed(0)
    model = _tiny().eval()  # 16 px, 4 x 4 grid
    x = torch.randn(2, 3, 28, 28)  # 7 x 7 grid
    with torch.no_grad():
        y = model(x)
        model.set_image_size(28)
        torch.testing.assert_close(model(x), y)


def test_reset_classifier_is_zero_initialised() -> None:
    model = _tiny()
    with torch.no_grad():
        model.heads.head.weight.normal_()
    model.reset_classifier(3)
    head = model.heads.head
    assert head.out_features == 3 and not head.weight.any() and not head.bias.any()
    assert not model(torch.randn(2, 3, 16, 16)).any()  # a fine-tuning run starts from uniform predictions


def test_patch_embedding_is_lecun_normal_as_jax_draws_it() -> None:
    """The reference code's patch embedding: std sqrt(1 / fan_in) after truncation at 2 / 0.8796 of it."""
    torch.manual_seed(0)
    model = _tiny(patch_size=16, embed_dim=256, img_size=32)  # 256 filters of 3 x 16 x 16: 196,608 weights
    w = model.patch_embed.proj.weight.detach()
    target = (3 * 16 * 16) ** -0.5
    # Sampling error of the std: about 1 / sqrt(2 * 196,608) = 0.16%; without the correction it is 0.88 x.
    assert float(w.std()) == pytest.approx(target, rel=0.01)
    assert float(w.abs().max()) <= 2 * target / 0.87962566103423978 + 1e-7
    assert float(w.abs().max()) > 2 * target  # the cut sits beyond two target stds, as in jax
    assert not model.patch_embed.proj.bias.any()


def test_attention_maps_are_distributions() -> None:
    torch.manual_seed(0)
    model = _tiny().eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        maps = model.attention_maps(x)
        y = model(x)  # maps are not kept afterwards
    assert len(maps) == 2
    for attn in maps:
        assert attn.shape == (2, 4, 17, 17)  # (B, heads, 1 + 16 patches, 1 + 16)
        assert (attn >= 0).all()
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, 17))
    assert all(block.self_attention.last_attn is None for block in model.encoder.layers)
    assert y.shape == (2, 5)


def test_small_input_form_uses_4px_patches() -> None:
    with torch.device("meta"):
        model = create_model("vit_base_patch16_224", num_classes=10, in_chans=1, image_size=28)
    assert model.patch_size == 4 and model.grid_size == (8, 8)
    assert model.forward_features(torch.empty(2, 1, 28, 28, device="meta")).shape == (2, 1 + 49, 768)
