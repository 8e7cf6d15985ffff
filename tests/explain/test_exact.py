"""Explanations of fixed-weight toy models against results worked out by hand (to 1e-6), and the promise
that explaining leaves the model as it was."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.explain import (
    attention_rollout,
    deconvnet,
    feature_maps,
    first_layer_filters,
    grad_cam,
    grad_cam_pp,
    guided_backprop,
    occlusion,
)

X = torch.tensor([[[[1.0, -2.0, 3.0], [0.5, 4.0, -1.0], [2.0, 0.0, -3.0]]]])  # (1, 1, 3, 3)
CONV_W = (2.0, -1.0)  # 1x1 convolution 1 -> 2 channels
CONV_B = (0.5, 1.0)
HEAD = ((1.0, 3.0), (-2.0, 0.5))  # linear 2 -> 2 classes, no bias


class Toy(nn.Module):
    """conv1x1 (1 -> 2) -> [ReLU] -> global average pool -> linear (2 -> 2): A_k = w_k x + b_k and
    y_c = sum_k V_ck mean(f(A_k)), so dy_c / dA_kij = V_ck / 9 (times 1[A_kij > 0] with the ReLU)."""

    def __init__(self, relu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(CONV_W).view(2, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor(CONV_B))
            self.fc.weight.copy_(torch.tensor(HEAD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def _acts() -> list[list[list[float]]]:
    xs = X[0, 0].tolist()
    return [[[w * v + b for v in row] for row in xs] for w, b in zip(CONV_W, CONV_B)]


def _expected_cam(c: int, relu: bool, plus: bool) -> torch.Tensor:
    A = _acts()
    cam = [[0.0] * 3 for _ in range(3)]
    for k in range(2):
        g = [
            [HEAD[c][k] / 9 * (1.0 if (A[k][i][j] > 0 or not relu) else 0.0) for j in range(3)]
            for i in range(3)
        ]
        if plus:
            s = sum(sum(r) for r in A[k])
            weight = 0.0
            for i in range(3):
                for j in range(3):
                    d = 2 * g[i][j] ** 2 + s * g[i][j] ** 3
                    alpha = g[i][j] ** 2 / d if d != 0 else 0.0
                    weight += alpha * max(g[i][j], 0.0)
        else:
            weight = sum(sum(r) for r in g) / 9
        for i in range(3):
            for j in range(3):
                cam[i][j] += weight * A[k][i][j]
    return torch.tensor([[[max(v, 0.0) for v in row] for row in cam]])


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("target", [0, 1])
def test_grad_cam_matches_hand_computation(relu: bool, target: int) -> None:
    model = Toy(relu)
    got = grad_cam(model, X, "conv", target, upsample=False)
    torch.testing.assert_close(got, _expected_cam(target, relu, plus=False), atol=1e-6, rtol=0)
    # The in-place ReLU after the layer must not have overwritten the recorded activations: with it, some
    # A_kij are negative, and the hand result uses them as they were.
    assert min(min(r) for r in _acts()[1]) < 0


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("target", [0, 1])
def test_grad_cam_pp_matches_hand_computation(relu: bool, target: int) -> None:
    got = grad_cam_pp(Toy(relu), X, "conv", target, upsample=False)
    torch.testing.assert_close(got, _expected_cam(target, relu, plus=True), atol=1e-6, rtol=0)


def test_grad_cam_default_target_is_prediction_and_upsampling_keeps_shape() -> None:
    model = Toy()
    pred = int(model(X).argmax())
    torch.testing.assert_close(grad_cam(model, X, "conv", upsample=False), _expected_cam(pred, False, False))
    assert grad_cam(model, X, "conv").shape == (1, 3, 3)


class PixelLogit(nn.Module):
    """logits (a . x, 0): p(class 0) = sigmoid(a . x)."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.a).sum(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], 1)


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_occlusion_one_pixel_window() -> None:
    a = torch.tensor([[[0.3, -0.2, 0.1], [0.4, 0.25, -0.5], [0.05, 0.2, -0.1]]])
    model = PixelLogit(a)
    got = occlusion(model, X, 0, window=1, stride=1, fill=0.0)
    total = float((a * X[0]).sum())
    expected = [[_sigmoid(total - float(a[0, i, j] * X[0, 0, i, j])) for j in range(3)] for i in range(3)]
    torch.testing.assert_close(got, torch.tensor([expected]), atol=1e-6, rtol=0)


def test_occlusion_two_pixel_window_averages_covering_squares() -> None:
    a = torch.tensor([[[0.3, -0.2, 0.1], [0.4, 0.25, -0.5], [0.05, 0.2, -0.1]]])
    fill = 0.7
    got = occlusion(PixelLogit(a), X, 0, window=2, stride=1, fill=fill)
    # Four squares with top-left (0,0), (0,1), (1,0), (1,1); each covers 2x2 pixels set to 0.7.
    p = {}
    for t in (0, 1):
        for l in (0, 1):
            x = X[0, 0].clone()
            x[t : t + 2, l : l + 2] = fill
            p[(t, l)] = _sigmoid(float((a[0] * x).sum()))
    expected = [[0.0] * 3 for _ in range(3)]
    for i in range(3):
        for j in range(3):
            covering = [p[(t, l)] for (t, l) in p if t <= i < t + 2 and l <= j < l + 2]
            expected[i][j] = sum(covering) / len(covering)
    torch.testing.assert_close(got, torch.tensor([expected]), atol=1e-6, rtol=0)


def test_deconvnet_matches_hand_computation() -> None:
    # conv 2x2 (no padding) -> ReLU -> max pool 2x2 on a 3x3 image: one 1x1 activation to project.
    conv = nn.Conv2d(1, 1, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -1.0], [0.5, 2.0]]]]))
        conv.bias.fill_(0.25)
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1, 2))
    x = X
    # Conv output (bias 0.25), by hand: out[p,q] = sum_uv w[u,v] x[p+u, q+v] + 0.25
    xs, w = x[0, 0].tolist(), [[1.0, -1.0], [0.5, 2.0]]
    out = [
        [sum(w[u][v] * xs[p + u][q + v] for u in range(2) for v in range(2)) + 0.25 for q in range(2)]
        for p in range(2)
    ]
    flat = [out[0][0], out[0][1], out[1][0], out[1][1]]
    v = max(max(flat), 0.0)  # ReLU then max pool
    p, q = divmod(flat.index(max(flat)), 2)  # the switch
    # Reverse: unpool puts v at (p, q); ReLU keeps it (v > 0); transposed conv spreads v * w over the image.
    expected = [[0.0] * 3 for _ in range(3)]
    for u in range(2):
        for t in range(2):
            expected[p + u][q + t] += v * w[u][t]
    proj = deconvnet(model, x, "2", top_k=1)  # layer '2': the max pool of the Sequential model itself
    torch.testing.assert_close(proj.images[0, 0, 0], torch.tensor(expected), atol=1e-6, rtol=0)
    assert proj.channels.tolist() == [[0]] and abs(float(proj.activations[0, 0]) - v) < 1e-6


class _DeconvReLU(torch.autograd.Function):
    """The deconvnet's rule as an autograd oracle: forward ReLU, backward ReLU of the incoming signal."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, g: torch.Tensor) -> torch.Tensor:
        return g.clamp(min=0)


def test_deconvnet_equals_autograd_with_the_deconvnet_relu_rule() -> None:
    """Unpooling by switches is the max pool's gradient and transposed filters the convolution's, so the
    projection equals the gradient of the chosen activation when ReLUs pass back ReLU(signal): checked
    through overlapping pools (3x3 stride 2, ceil mode), padding and strides that drop rows."""
    torch.manual_seed(0)
    layers = [
        nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
    ]  # fmt: skip
    model = nn.Sequential(nn.Sequential(*layers), nn.Flatten(), nn.LazyLinear(3))
    x = torch.randn(2, 2, 23, 21)
    model(x)
    proj = deconvnet(model, x, "0.5", top_k=3)
    h = x.clone().requires_grad_(True)
    a = h
    for m in layers:
        a = _DeconvReLU.apply(a) if isinstance(m, nn.ReLU) else m(a)
    for b in range(2):
        for j in range(3):
            c = int(proj.channels[b, j])
            value = a[b, c].max()
            (g,) = torch.autograd.grad(value * value.detach(), h, retain_graph=True)
            torch.testing.assert_close(proj.images[b, j], g[b], atol=1e-6, rtol=1e-5)


def test_guided_backprop_matches_hand_computation() -> None:
    # x -> conv1x1 (w=2, b=-1) -> ReLU (in place) -> flatten -> linear; d logit_c / dx_ij guided:
    # w * max(V_c,ij, 0) * 1[2 x_ij - 1 > 0]
    conv = nn.Conv2d(1, 1, 1)
    head = nn.Linear(9, 2, bias=False)
    V = torch.tensor([[1.0, -1.0, 2.0, 0.5, -0.5, 3.0, -2.0, 1.5, 0.25], [0.0] * 9])
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(-1.0)
        head.weight.copy_(V)
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.Flatten(), head)
    got = guided_backprop(model, X, 0)
    xs = X.flatten().tolist()
    expected = [2.0 * max(float(V[0, i]), 0.0) * (1.0 if 2 * xs[i] - 1 > 0 else 0.0) for i in range(9)]
    torch.testing.assert_close(got.flatten(), torch.tensor(expected), atol=1e-6, rtol=0)


class UniformAttention(nn.Module):
    """An attention layer whose map is uniform over N tokens (1 class token + a 2x2 grid)."""

    def __init__(self) -> None:
        super().__init__()
        self.keep_attn = False
        self.last_attn: torch.Tensor | None = None


class ToyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([UniformAttention(), UniformAttention()])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            if blk.keep_attn:
                blk.last_attn = torch.full((x.shape[0], 2, 5, 5), 0.2)  # (B, heads, N, N), rows sum to 1
        return x


def test_attention_rollout_matches_hand_computation() -> None:
    # A' = 0.5 U + 0.5 I with U uniform (U @ U = U): A' A' = 0.75 U + 0.25 I, so the class token's row
    # gives each of the 4 patches 0.75 / 5 = 0.15.
    got = attention_rollout(ToyTransformer(), torch.zeros(1, 1, 8, 8))
    torch.testing.assert_close(got, torch.full((1, 2, 2), 0.15), atol=1e-6, rtol=0)


def test_feature_maps_and_filters_are_the_layer_and_the_weights() -> None:
    model = Toy(relu=True)
    maps = feature_maps(model, X, "conv")
    torch.testing.assert_close(maps, model.conv(X), atol=1e-6, rtol=0)  # before the in-place ReLU
    torch.testing.assert_close(first_layer_filters(model), model.conv.weight.detach())


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def test_explaining_leaves_the_model_unchanged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    )  # fmt: skip
    x = torch.randn(2, 1, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(x)
    grad_cam(model, x, "3")
    grad_cam_pp(model, x, "3")
    occlusion(model, x, window=3)
    deconvnet(model, x, "4")
    guided_backprop(model, x)
    feature_maps(model, x, "4")
    assert _hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(model(x), out, atol=0, rtol=0)


def test_layer_errors_are_one_line_and_name_the_fix() -> None:
    model = Toy()
    with pytest.raises(
        ConfigError, match=r"unknown layer 'cnv'.*did you mean conv.*valid layers include conv, act, fc"
    ):
        grad_cam(model, X, "cnv")
    with pytest.raises(ConfigError, match="no spatial layout"):
        grad_cam(model, X, "fc")  # the logits
    with pytest.raises(
        ConfigError, match="no attention layers: attention maps apply to vit, swin and coatnet"
    ):
        attention_rollout(model, X)
    with pytest.raises(ConfigError, match="no nn.ReLU modules"):
        guided_backprop(model, X)
    with pytest.raises(ConfigError, match="class index"):
        grad_cam(model, X, "conv", 5)
    with pytest.raises(ConfigError, match="cannot invert Conv2d|not inside an nn.Sequential"):
        deconvnet(model, X, "conv")
    F.relu(X)  # the input itself is never changed
    assert X[0, 0, 0, 1] == -2.0
