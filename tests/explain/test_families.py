"""The methods on the zoo's families through their default layers (``ModelSpec.cam_layer``), and the errors
where a method does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import imgcls
from imgcls.errors import ConfigError
from imgcls.explain import attention_maps, class_attention, grad_cam, grad_cam_pp, window_attention
from imgcls.explain.cam import layer_gradients
from imgcls.explain.hooks import canonical_name, resolve_layer
from imgcls.models.registry import get_model_spec, list_models


def _model(name: str, chans: int, size: int) -> nn.Module:
    torch.manual_seed(0)
    model = imgcls.create_model(name, num_classes=5, in_chans=chans, image_size=size).eval()
    for m in model.modules():  # ViT and Swin start with a zero head: give the gradient something to carry
        if isinstance(m, nn.Linear) and m.out_features == 5:
            nn.init.normal_(m.weight, std=0.1)
    return model


def test_every_family_declares_a_default_layer_that_exists() -> None:
    seen: dict[str, str] = {}  # the smallest variant of each family
    for name in sorted(list_models(), key=lambda n: get_model_spec(n).num_params or 0):
        seen.setdefault(get_model_spec(name).family, name)
    for family, name in seen.items():
        spec = get_model_spec(name)
        if family == "linear":
            assert spec.cam_layer is None
            continue
        with torch.device("meta"):
            model = imgcls.create_model(name, num_classes=5, **dict(spec.test_kwargs))
        resolve_layer(model, spec.cam_layer)  # raises for a name the model does not have


@pytest.mark.parametrize(
    ("name", "chans", "size", "layer_map"),
    [
        ("lenet5_modern", 1, 28, (16, 10, 10)),  # pads 28 -> 32: the map is cut back to the image
        ("cifar_resnet20", 3, 32, (64, 8, 8)),
        ("vit_tiny_patch4_32", 3, 32, (192, 8, 8)),  # 1 + 64 tokens: the class token dropped, 8x8 grid
        ("swin_t_patch2_window4_32", 3, 32, (768, 2, 2)),  # channels-last (B, 2, 2, 768) permuted
        ("coatnet_0", 3, 32, (768, 2, 2)),  # its last (transformer) stage
    ],
)
def test_grad_cam_on_the_default_layer(
    name: str, chans: int, size: int, layer_map: tuple[int, int, int]
) -> None:
    model = _model(name, chans, size)
    x = torch.randn(2, chans, size, size)
    layer = get_model_spec(name).cam_layer
    acts, grads, _, _ = layer_gradients(model, x, layer)
    assert acts.shape == grads.shape == (2, *layer_map) and grads.any()  # the gradient reaches the positions
    for method in (grad_cam, grad_cam_pp):
        maps = method(model, x, layer)
        assert maps.shape == (2, size, size)
        assert torch.isfinite(maps).all() and (maps >= 0).all()


def test_vit_block_output_has_no_spatial_layer_after_it() -> None:
    model = _model("vit_tiny_patch4_32", 3, 32)
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(
        ConfigError, match="does not depend on the positions of layer 'encoder.layers.encoder_layer_11'"
    ):
        grad_cam(model, x, "encoder.layers.encoder_layer_11")
    assert class_attention(model, x).shape == (1, 3, 8, 8)


def test_attention_maps_are_real_with_fused_attention() -> None:
    model = _model("vit_tiny_patch4_32", 3, 32)
    x = torch.randn(2, 3, 32, 32)
    before = model(x)  # fused scaled_dot_product_attention
    maps = attention_maps(model, x)
    assert len(maps) == model.cfg.depth
    for a in maps:
        assert a.shape == (2, 3, 65, 65)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 3, 65), atol=1e-5, rtol=0)
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)  # maps asked for, nothing changed


def test_swin_window_maps_sum_to_one_per_window() -> None:
    model = _model("swin_t_patch2_window4_32", 3, 32)
    maps = window_attention(model, torch.randn(2, 3, 32, 32))
    assert len(maps) == sum(model.cfg.depths)
    first = maps[0]  # 16x16 grid, windows of 4x4, not shifted
    assert first.shape == (2, 16, 16)
    per_window = first.reshape(2, 4, 4, 4, 4).sum(dim=(2, 4))  # (B, H/M, M, W/M, M) -> (B, H/M, W/M)
    torch.testing.assert_close(per_window, torch.ones(2, 4, 4), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="per-window maps apply to swin"):
        window_attention(_model("vit_tiny_patch4_32", 3, 32), torch.randn(1, 3, 32, 32))


def test_negative_index_layer_names_follow_the_depth() -> None:
    shallow = imgcls.create_model("vit_tiny_patch4_32", num_classes=2, depth=2)
    assert (
        canonical_name(shallow, get_model_spec("vit_tiny_patch4_32").cam_layer)
        == "encoder.layers.encoder_layer_1.ln_1"
    )
    with pytest.raises(ConfigError, match="unknown layer 'encoder.layers.-3'"):
        resolve_layer(shallow, "encoder.layers.-3")
