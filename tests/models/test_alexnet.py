"""AlexNet and ZFNet specifics: torchvision layout and function, the paper's LRN and the input scale its
constants need (GoogLeNet's too), the two-GPU split, layer sizes, initialisation, the small-image form and
ZFNet's filter renormalisation."""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgcls.models import count_params, create_model, get_model_spec
from imgcls.models.alexnet import AlexNet, AlexNetConfig
from imgcls.models.googlenet import GoogLeNet
from imgcls.models.layers.lrn import LocalResponseNorm
from imgcls.models.zfnet import renormalize_filters_

from .conftest import layout, torchvision_layout


def _narrow(name: str, **kw: object) -> AlexNet:
    """The variant's convolutions with a 16-wide classifier: same features, cheap to build."""
    cfg: AlexNetConfig = get_model_spec(name).kwargs["cfg"]
    return AlexNet(replace(cfg, hidden=16), num_classes=10, **kw)


def _conv_out_sides(model: nn.Module, size: int) -> list[int]:
    """Spatial side after every conv and pool of ``model.features`` (meta device: free)."""
    sides: list[int] = []
    x = torch.empty(1, 3, size, size, device="meta")
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            sides.append(x.shape[-1])
    return sides


def test_alexnet_state_dict_matches_torchvision() -> None:
    expected = torchvision_layout("alexnet")
    with torch.device("meta"):
        model = create_model("alexnet")
    assert layout(model) == expected


def test_alexnet_computes_torchvisions_function() -> None:
    torch.manual_seed(0)
    model = _narrow("alexnet").eval()  # torchvision's features, a 16-wide classifier: cheap, same function
    p = dict(model.named_parameters())
    x = torch.randn(2, 3, 63, 63)  # torchvision's min_size for AlexNet
    # torchvision.models.AlexNet.forward, written out with the keys of alexnet.txt.
    y = F.relu(F.conv2d(x, p["features.0.weight"], p["features.0.bias"], stride=4, padding=2))
    y = F.max_pool2d(y, 3, 2)
    y = F.max_pool2d(F.relu(F.conv2d(y, p["features.3.weight"], p["features.3.bias"], padding=2)), 3, 2)
    for i in (6, 8, 10):
        y = F.relu(F.conv2d(y, p[f"features.{i}.weight"], p[f"features.{i}.bias"], padding=1))
    y = F.adaptive_avg_pool2d(F.max_pool2d(y, 3, 2), (6, 6)).flatten(1)
    y = F.relu(F.linear(y, p["classifier.1.weight"], p["classifier.1.bias"]))
    y = F.relu(F.linear(y, p["classifier.4.weight"], p["classifier.4.bias"]))
    y = F.linear(y, p["classifier.6.weight"], p["classifier.6.bias"])
    with torch.no_grad():
        torch.testing.assert_close(model(x), y)
    kinds = [type(m).__name__ for m in model.classifier]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]


def test_lrn_is_the_papers_formula() -> None:
    x = torch.randn(2, 9, 3, 3)
    k, n, alpha, beta = 2.0, 5, 1e-4 * 1e3, 0.75  # a large alpha so the normalisation is visible
    expected = torch.empty_like(x)
    for c in range(9):
        lo, hi = max(0, c - n // 2), min(8, c + n // 2)
        expected[:, c] = x[:, c] / (k + alpha * x[:, lo : hi + 1].pow(2).sum(1)) ** beta
    torch.testing.assert_close(LocalResponseNorm(n, alpha, beta, k)(x), expected)


@pytest.mark.parametrize("size", [3, 4, 5])
@pytest.mark.parametrize("channels_last", [False, True])
def test_lrn_matches_torchs_and_its_gradient(size: int, channels_last: bool) -> None:
    x = torch.randn(2, 7, 4, 5, dtype=torch.float64) * 60  # mean-subtracted 0-255 pixels' scale
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    ours = LocalResponseNorm(size, 1e-4, 0.75, 2.0)(x)
    theirs = F.local_response_norm(x, size, 1e-4 * size, 0.75, 2.0)  # torch divides alpha by size
    torch.testing.assert_close(ours, theirs)
    w = torch.randn_like(ours)
    torch.testing.assert_close(*(torch.autograd.grad((y * w).sum(), x)[0] for y in (ours, theirs)))


def test_grouped_lrn_keeps_gpus_apart() -> None:
    lrn = LocalResponseNorm(5, alpha=1.0, beta=0.75, k=2.0, groups=2)
    x = torch.ones(1, 8, 1, 1)
    spiked = x.clone()
    spiked[:, 3] = 10.0  # last map of the first "GPU"
    diff = (lrn(spiked) - lrn(x)).abs().flatten()
    assert diff[1:4].gt(0).all() and diff[4:].eq(0).all()  # channel 4 (second GPU) is untouched


def test_two_gpu_split_connects_only_own_gpu_maps() -> None:
    model = _narrow("alexnet_paper_2gpu").eval()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # conv3 and the fc layers cross GPUs (Sec. 3.5)
    # conv2 -> ReLU -> LRN -> pool stays on its GPU: changing GPU 1's conv1 maps leaves GPU 2's maps alone.
    layers = list(model.features)
    i2, i3 = layers.index(convs[1]), layers.index(convs[2])
    stem, block = model.features[:i2], model.features[i2:i3]
    with torch.no_grad():
        a = stem(torch.randn(1, 3, 99, 99))
        b = a.clone()
        b[:, :48] += 1.0  # the 48 conv1 maps of GPU 1
        ya, yb = block(a), block(b)
    assert not torch.allclose(ya[:, :128], yb[:, :128])
    torch.testing.assert_close(ya[:, 128:], yb[:, 128:])
    with torch.device("meta"):
        one, two = create_model("alexnet_paper"), create_model("alexnet_paper_2gpu")
    assert count_params(one) - count_params(two) == 1_413_120  # halved conv2, conv4, conv5


def test_paper_layer_order_and_sizes() -> None:
    model = _narrow("alexnet_paper")
    kinds = [type(m).__name__ for m in model.features[:8]]
    # Sec. 3.3 / 3.4: ReLU, then response normalisation, then overlapping max-pooling.
    assert kinds == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"] * 2
    assert [type(m).__name__ for m in model.classifier] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert all(m.p == 0.5 for m in model.classifier if isinstance(m, nn.Dropout))
    with torch.device("meta"):
        model = create_model("alexnet_paper")
    # Fig. 2: 55 -> pool 27 -> 27 -> pool 13 -> 13, 13, 13 -> pool 6, from a 227x227 input.
    assert _conv_out_sides(model, 227) == [55, 27, 27, 13, 13, 13, 13, 6]


def test_paper_initialisation() -> None:
    torch.manual_seed(0)
    model = _narrow("alexnet_paper")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    # Sec. 5: bias 1 in conv2, conv4, conv5, fc6, fc7; 0 in conv1, conv3, fc8.
    expected_bias = [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert [float(m.bias.detach().mean()) for m in layers] == expected_bias
    assert abs(float(layers[1].weight.detach().std()) - 0.01) < 1e-3


def test_small_input_form_keeps_the_classifier() -> None:
    for name in ("alexnet", "alexnet_paper", "zfnet"):
        with torch.device("meta"):
            big = create_model(name)
            small = create_model(name, image_size=32)
        assert small.features[0].kernel_size == (3, 3) and small.features[0].stride == (1, 1)
        assert small.classifier[-1].in_features == big.classifier[-1].in_features == 4096
        fc6 = [m for m in small.classifier if isinstance(m, nn.Linear)][0]
        assert fc6.in_features == 256 * 6 * 6
        for size in (28, 32):
            assert small.forward_features(torch.empty(1, 3, size, size, device="meta")).shape[-1] >= 6


def test_zfnet_first_layers_and_sizes() -> None:
    with torch.device("meta"):
        model = create_model("zfnet")
    c1, c2 = [m for m in model.features if isinstance(m, nn.Conv2d)][:2]
    assert (c1.kernel_size, c1.stride, c2.kernel_size, c2.stride) == ((7, 7), (2, 2), (5, 5), (2, 2))
    # Fig. 3: 110 -> pool 55 -> 26 -> pool 13 -> 13, 13, 13 -> pool 6 from 224x224.
    assert _conv_out_sides(model, 224) == [110, 55, 26, 13, 13, 13, 13, 6]
    kinds = [type(m).__name__ for m in model.features[:4]]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "LocalResponseNorm"]  # pool, then contrast norm


def test_zfnet_filter_renormalisation() -> None:
    conv = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.fill_(0.01)
        conv.weight[1] = 0.5  # RMS 0.5 > 0.1
    before = conv.weight.detach().clone()
    assert renormalize_filters_(nn.Sequential(conv)) == 1
    rms = conv.weight.detach().pow(2).mean(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(rms[1], torch.tensor(0.1))
    torch.testing.assert_close(conv.weight[[0, 2]].detach(), before[[0, 2]])  # small filters untouched


@pytest.mark.parametrize(
    "name,error",
    [("zfnet", "38.4% top-1"), ("alexnet_paper_2gpu", "40.7% / 18.2% top-1")],
)
def test_stored_top1_is_the_quoted_table_2_error(name: str, error: str) -> None:
    """The spec's top-1 is 100 minus the Table 2 error the family docstring quotes: data and prose agree."""
    spec = get_model_spec(name)
    module = importlib.import_module(f"imgcls.models.{spec.family}")
    assert error in " ".join((module.__doc__ or "").split())
    assert spec.top1 == pytest.approx(100 - float(error.split("%")[0]))


def test_zfnet_declares_its_filter_renormalisation_as_post_step() -> None:
    """Training zfnet applies Sec. 3's cap by default: the spec's hook, which the trainer calls after each
    step, rescales every conv filter over RMS 0.1; AlexNet declares none."""
    assert get_model_spec("alexnet_paper").post_step is None
    hook = get_model_spec("zfnet").post_step
    assert hook is not None
    torch.manual_seed(0)
    model = _narrow("zfnet")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        convs[1].weight.mul_(100.0)  # conv2's filters at RMS ~1
    hook(model)
    rms = [m.weight.detach().pow(2).mean(dim=(1, 2, 3)).sqrt() for m in convs]
    torch.testing.assert_close(rms[1], torch.full_like(rms[1], 0.1))
    assert all(float(r.max()) < 0.05 for r in rms[:1] + rms[2:])  # N(0, 0.01^2) filters untouched


def test_zfnet_initialisation_has_zero_biases() -> None:
    torch.manual_seed(0)
    layers = [m for m in _narrow("zfnet").modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in layers)  # Sec. 3: "biases set to 0"
    assert abs(float(layers[1].weight.detach().std()) - 0.01) < 1e-3


def _standardised_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Images as imgcls's loader feeds them (zero mean, unit std per channel), with the spatial correlation of
    natural images: smooth structure at 1/8 of the side plus fine detail."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, size // 8, size // 8, generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = x + 0.3 * torch.randn(n, 3, size, size, generator=g)
    return (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)


def _first_lrn_divisor(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the model's first LRN divides each clearly positive response by, relative to k^beta (1: no effect)."""
    lrn = next(m for m in model.modules() if isinstance(m, LocalResponseNorm))
    seen: dict[str, torch.Tensor] = {}

    def grab(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen["in"], seen["out"] = inputs[0], out
        raise StopIteration  # nothing past the first LRN is needed

    handle = lrn.register_forward_hook(grab)
    try:
        with torch.no_grad(), pytest.raises(StopIteration):
            model.eval()(x)
    finally:
        handle.remove()
    a, b = seen["in"], seen["out"]
    keep = a > 1e-3 * a.max()
    return (a[keep] / b[keep]) / lrn.k**lrn.beta


@pytest.mark.parametrize("name,size", [("alexnet_paper", 227), ("zfnet", 224), ("googlenet_paper", 224)])
def test_lrn_normalises_standardised_images_at_init(name: str, size: int) -> None:
    """With the papers' input scale restored (``input_scale``), the first LRN divides high-energy positions by
    clearly more than low-energy ones already at init; fed standardised pixels as they are, it would divide
    every response by k^beta, within 1e-4: a constant scale, not a normalisation."""
    cfg = get_model_spec(name).kwargs["cfg"]
    assert cfg.input_scale == pytest.approx(255 * 0.226)
    x = _standardised_images(4, size)
    spread = {}
    for scale in (cfg.input_scale, None):
        torch.manual_seed(0)
        if name == "googlenet_paper":
            model: nn.Module = GoogLeNet(replace(cfg, input_scale=scale), num_classes=10, aux_logits=False)
        else:
            model = AlexNet(replace(cfg, hidden=16, input_scale=scale), num_classes=10)
        spread[scale] = float(_first_lrn_divisor(model, x).quantile(0.99)) - 1
    assert spread[cfg.input_scale] > 0.03  # the strongest 1% of responses damped by over 3% more (6-10%)
    assert spread[None] < 1e-3
