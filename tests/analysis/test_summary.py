"""imgcls.analysis.summarize: MACs per layer (convolutions of every kind, attention), parameters, totals."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from imgcls.analysis import summarize, summarize_model
from imgcls.errors import ConfigError, UnknownNameError
from imgcls.models import create_model, get_model_spec, list_models


def _macs(model: nn.Module, size: tuple[int, int, int]) -> int:
    return summarize(model, size).totals["macs"]


def test_convolutions_of_every_kind() -> None:
    # MACs = output values x (C_in / groups) x k_h x k_w; dilation and stride act through the output size.
    cases = [
        (nn.Conv2d(8, 16, 3, padding=1), 16 * 16 * 16 * 8 * 9),  # plain, 16x16 out
        (nn.Conv2d(8, 16, 3, stride=2, padding=1), 16 * 8 * 8 * 8 * 9),  # strided: 8x8 out
        (nn.Conv2d(8, 16, 3, padding=2, dilation=2), 16 * 16 * 16 * 8 * 9),  # dilated: same cost per value
        (nn.Conv2d(8, 16, 3, dilation=2), 16 * 12 * 12 * 8 * 9),  # dilated, unpadded: 12x12 out
        (nn.Conv2d(8, 16, 3, padding=1, groups=4), 16 * 16 * 16 * 2 * 9),  # grouped: C_in / 4 per value
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), 8 * 16 * 16 * 1 * 9),  # depthwise
        (nn.Conv2d(8, 16, (1, 7), padding=(0, 3)), 16 * 16 * 16 * 8 * 7),  # asymmetric kernel
        (nn.ConvTranspose2d(8, 4, 2, stride=2), 8 * 16 * 16 * 4 * 4),  # transposed: per input value
        (nn.Linear(16, 5), 8 * 16 * 16 * 5),  # on (1, 8, 16, 16): 8 x 16 rows of 16 values
    ]
    for layer, want in cases:
        assert _macs(layer, (8, 16, 16)) == want, layer


def test_flops_are_twice_the_macs_and_labelled_apart() -> None:
    s = summarize(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)), (3, 8, 8), depth=1
    )
    assert s.totals["flops"] == 2 * s.totals["macs"] == 2 * (4 * 36 * 27 + 144 * 2)
    assert all(r.flops == 2 * r.macs for r in s.rows)
    head = s.to_table().splitlines()[1]
    assert "MACs" in head and "FLOPs" in head


class _Attend(nn.Module):
    """Self-attention on (B, N, C) with a single projection, fused or explicit."""

    def __init__(self, dim: int = 16, heads: int = 2, fused: bool = True) -> None:
        super().__init__()
        self.qkv, self.heads, self.fused = nn.Linear(dim, 3 * dim, bias=False), heads, fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.squeeze(1)  # (B, 1, N, C) -> (B, N, C)
        b, n, c = x.shape
        qkv = (
            self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        )  # 3 x (B, H, N, d)
        q, k, v = qkv.unbind(0)
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        return ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(-1) @ v


def test_attention_counts_qk_and_av_on_cpu_and_meta() -> None:
    n, c, h = 10, 16, 2
    want = n * c * 3 * c + 2 * h * n * n * (c // h)  # projection, then QK^T and AV
    for fused in (True, False):
        model = _Attend(c, h, fused)
        assert summarize(model, (1, n, c), meta=False).totals["macs"] == want
        assert summarize(model, (1, n, c), meta=True).totals["macs"] == want
    # Why the formula is registered here: torch's counter sees the fused CPU kernel as free.
    with FlopCounterMode(display=False) as counter:
        _Attend(c, h, True)(torch.zeros(1, 1, n, c))
    assert counter.get_total_flops() == 2 * n * c * 3 * c


def test_shared_parameters_count_once_and_frozen_ones_apart() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = self.a  # the same layer under a second name
            self.frozen = nn.Linear(4, 2)
            self.frozen.requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.frozen(self.b(self.a(x)))

    s = summarize(Twice(), (1, 1, 4))
    assert s.totals["params_trainable"] == 20 and s.totals["params_frozen"] == 10
    assert s.row("a").calls == 2 and s.row("a").macs == 2 * 16
    assert s.totals["macs"] == 2 * 16 + 8


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "vit_tiny_patch4_32", "densenet40_k12"])
def test_totals_are_the_sum_of_rows_at_every_depth(name: str) -> None:
    spec = get_model_spec(name)
    with torch.device("meta"):
        model = create_model(name)
    totals = []
    for depth in (0, 1, 2, 5):
        s = summarize(model, spec.smallest_input, depth=depth)
        for key in ("macs", "params_trainable", "params_frozen", "activation_bytes"):
            assert s.totals[key] == sum(getattr(r, key) for r in s.rows)
        assert max(r.depth for r in s.rows) <= depth
        totals.append(s.totals)
    assert all(t == totals[0] for t in totals)
    assert totals[0]["params"] == sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:  # convolutions and products agree with torch's counter
        model.eval()(torch.zeros(1, *spec.smallest_input, device="meta"))
    assert totals[0]["flops"] == counter.get_total_flops()


def test_real_model_runs_on_meta_and_is_left_as_it_was() -> None:
    model = create_model("cifar_resnet20", num_classes=10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = summarize(model, (3, 32, 32))
    assert s.device == "meta" and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert s.output_shape == (1, 10)


def test_model_that_cannot_run_on_meta_runs_for_real() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * float(x.sum().item() >= 0)  # a value, which meta tensors do not have

    s = summarize(DataDependent(), (1, 1, 4))
    assert s.device == "cpu" and s.totals["macs"] == 8 and s.row("fc").calls == 1


def test_activation_bytes_are_new_tensors_only() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten())
    s = summarize(model, (3, 8, 8), depth=1)
    assert s.row("0").activation_bytes == 4 * 8 * 8 * 4  # float32
    assert s.row("1").activation_bytes == 0 and s.row("2").activation_bytes == 0  # in place, a view


# Reference multiply-adds at 224 px (or the variant's native size), against the figures in the registry.
# EfficientNet B4, B5 and B7: the registry holds the paper's Table 2 (4.2, 9.9, 37 B "FLOPs"); our count
# equals torchvision's published figures for the same networks (4.39, 10.27, 37.75 GFLOPS on its weights'
# pages), which differ from the paper's by 2.0-4.6%. Reported; kept failing until the reference is settled.
_WITH_MACS = [n for n in list_models() if get_model_spec(n).gmacs is not None]


@pytest.mark.parametrize("name", _WITH_MACS)
def test_macs_match_the_registry_reference(name: str) -> None:
    spec = get_model_spec(name)
    with torch.device("meta"):
        model = create_model(name, **dict(spec.ref_kwargs))
    assert summarize(model, spec.input_size, depth=0).totals["macs"] / 1e9 == pytest.approx(
        spec.gmacs, rel=0.02
    )


@pytest.mark.parametrize(
    ("name", "gmacs"),
    [
        # Figures the issue names: ViT-B/16 and ResNet-50 as torchvision lists them (17.56, 4.09: the issue's
        # 17.58 and 4.11 are within 0.2% and 0.5%), Swin-T from its paper's Table 1 (4.5G), MobileNetV2 0.30.
        ("vit_base_patch16_224", 17.58),
        ("swin_t", 4.49),
        ("resnet50", 4.11),
        ("mobilenet_v2", 0.305),
    ],
)
def test_macs_of_the_issue_figures(name: str, gmacs: float) -> None:
    assert summarize_model(name, depth=0).totals["macs"] / 1e9 == pytest.approx(gmacs, rel=0.02)


def test_outputs_table_dict_and_csv() -> None:
    s = summarize_model("resnet18", (3, 64, 64), depth=1)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["totals"]["macs"] == sum(r["macs"] for r in d["rows"])
    assert d["rows"][0]["name"] == "" and d["output_shape"] == [1, 1000]
    names = [r["name"] for r in d["rows"]]
    assert names.index("conv1") < names.index("maxpool") < names.index("layer1")  # execution order
    lines = s.to_csv().splitlines()
    assert lines[0].startswith("name,type,depth,output_shape") and len(lines) == len(s.rows) + 1
    layer4 = s.row("layer4")  # the small-image form at 64 px: a CIFAR stem, so layer4 is 8x8
    assert f"layer4,Sequential,1,1x512x8x8,{layer4.params_trainable}," in s.to_csv()
    table = s.to_table()
    assert "layer4" in table and "1x512x8x8" in table and f"{s.totals['params_trainable']:,}" in table


def test_bad_arguments_are_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="depth"):
        summarize(nn.Linear(2, 2), (1, 1, 2), depth=-1)
    with pytest.raises(ConfigError, match="input size"):
        summarize(nn.Linear(2, 2), (1, 2))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="does not run on a 3x8x8 input"):
        summarize(nn.Linear(2, 2), (3, 8, 8))
    with pytest.raises(UnknownNameError, match="imgcls models"):
        summarize_model("resnet_nope")
