from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from imgcls.errors import CheckpointError
from imgcls.models import create_model, load_pretrained
from imgcls.models.pretrained import adapt_input_conv, remap_legacy_keys


def _model(num_classes: int = 10):
    torch.manual_seed(0)
    return create_model("quicknet_s", num_classes=num_classes, in_chans=1)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip_through_files(tmp_path: Path, suffix: str) -> None:
    src = _model()
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # DDP-wrapped, nested
    else:
        save_file(state, str(path))
    dst = create_model("quicknet_s", num_classes=10, in_chans=1)
    load_pretrained(dst, path)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_missing_num_batches_tracked_is_accepted() -> None:
    state = {k: v for k, v in _model().state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.manual_seed(1)  # other weights than the source's: a loader that did nothing would fail below
    dst = create_model("quicknet_s", num_classes=10, in_chans=1)
    assert not all(torch.equal(dst.state_dict()[k], v) for k, v in state.items())
    load_pretrained(dst, state)
    for k, v in state.items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_mismatches_are_named() -> None:
    with pytest.raises(CheckpointError, match="shapes differ.*num_classes"):
        load_pretrained(_model(10), _model(5).state_dict())
    state = dict(_model().state_dict())
    state.pop("head.weight")
    with pytest.raises(CheckpointError, match="1 keys missing .*head.weight"):
        load_pretrained(_model(), state)
    state = dict(_model().state_dict()) | {"extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="unexpected .*extra.weight"):
        load_pretrained(_model(), state)


def test_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*bad.pth"):
        load_pretrained(_model(), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(_model(), tmp_path / "none.safetensors")


def test_legacy_names_are_mapped() -> None:
    keys = {
        "features.denseblock1.denselayer1.norm.1.weight": "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock1.denselayer2.conv.2.weight": "features.denseblock1.denselayer2.conv2.weight",
        "encoder.layers.encoder_layer_0.mlp.linear_1.bias": "encoder.layers.encoder_layer_0.mlp.0.bias",
        "encoder.layers.encoder_layer_0.mlp.linear_2.weight": "encoder.layers.encoder_layer_0.mlp.3.weight",
        "_orig_mod.fc.weight": "fc.weight",
        "features.0.weight": "features.0.weight",
    }
    out = remap_legacy_keys({k: torch.zeros(1) for k in keys})
    assert sorted(out) == sorted(keys.values())


def test_vit_checkpoint_at_another_resolution_loads_through_the_models_hook() -> None:
    torch.manual_seed(0)
    small = create_model("vit_tiny_patch4_32", num_classes=10, in_chans=1, img_size=16)  # 4x4 patch grid
    big = create_model("vit_tiny_patch4_32", num_classes=10, in_chans=1, img_size=32)  # 8x8 patch grid
    load_pretrained(big, small.state_dict())
    pos = big.state_dict()["encoder.pos_embedding"]
    assert pos.shape[1] == 1 + 64
    torch.testing.assert_close(
        pos[:, 0], small.state_dict()["encoder.pos_embedding"][:, 0]
    )  # class token kept


def test_adapt_input_conv_sums_for_grey_and_repeats_for_more_channels() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3)
    grey = torch.rand(2, 1, 9, 9)
    w1 = adapt_input_conv(conv.weight.detach(), 1)
    assert w1.shape == (8, 1, 3, 3)
    # A grey image seen by the RGB filters as three equal channels gives what the summed filters give.
    expected = torch.nn.functional.conv2d(grey.expand(-1, 3, -1, -1), conv.weight.detach())
    torch.testing.assert_close(torch.nn.functional.conv2d(grey, w1), expected)
    w5 = adapt_input_conv(conv.weight.detach(), 5)  # repeated R, G, B, R, G, scaled by 3/5
    assert w5.shape == (8, 5, 3, 3)
    torch.testing.assert_close(w5[:, 3:], conv.weight.detach()[:, :2] * 0.6)
    w6 = adapt_input_conv(conv.weight.detach(), 6)  # a multiple of 3: equal channels respond as before
    torch.testing.assert_close(torch.nn.functional.conv2d(grey.expand(-1, 6, -1, -1), w6), expected)
    w3 = adapt_input_conv(w1, 3)  # grey -> RGB: an RGB image responds as its channel mean did
    rgb = torch.rand(2, 3, 9, 9)
    torch.testing.assert_close(
        torch.nn.functional.conv2d(rgb, w3), torch.nn.functional.conv2d(rgb.mean(1, keepdim=True), w1)
    )
    assert adapt_input_conv(w1.half(), 3).dtype == torch.float16
    with pytest.raises(CheckpointError, match="only convolution weights"):
        adapt_input_conv(torch.zeros(4, 3 * 28 * 28), 1)


def test_load_pretrained_adapts_the_named_input_keys_only() -> None:
    rgb = create_model("quicknet_s", num_classes=10, in_chans=3).state_dict()
    grey = create_model("quicknet_s", num_classes=10, in_chans=1)
    with pytest.raises(CheckpointError, match="stem.0.weight"):  # not named: a mismatch, as before
        load_pretrained(grey, rgb)
    load_pretrained(grey, rgb, input_keys={"stem.0.weight"})
    assert torch.equal(grey.state_dict()["stem.0.weight"], rgb["stem.0.weight"].sum(1, keepdim=True))
    assert torch.equal(grey.state_dict()["head.weight"], rgb["head.weight"])
