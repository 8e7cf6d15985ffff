"""Do the maps point at the evidence? A synthetic task where only a small bright bar at a random position
decides the class (horizontal or vertical): after a few seconds of training, the maximum of the map falls on
the bar for >= 90% of images with Grad-CAM on a tiny CNN and >= 80% with attention rollout on a tiny ViT
(the pointing game, Zhang et al. 2016), and the same models with random weights do not get there (the
model-randomisation check of Adebayo et al. 2018, "Sanity Checks for Saliency Maps")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgcls.explain import attention_rollout, grad_cam
from imgcls.models.vit import VisionTransformer, ViTConfig

SIZE = 16
BAR = (2, 6)  # (rows, columns) of a horizontal bar; a vertical one is transposed


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (n, 1, 16, 16) of noise with one bright bar; labels (n,) 0 horizontal / 1 vertical; boxes
    (n, 4) top, left, bottom, right (exclusive) of the bar."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 1, SIZE, SIZE, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    boxes = torch.zeros(n, 4, dtype=torch.long)
    for i in range(n):
        h, w = BAR if y[i] == 0 else BAR[::-1]
        top = int(torch.randint(0, SIZE - h + 1, (1,), generator=g))
        left = int(torch.randint(0, SIZE - w + 1, (1,), generator=g))
        x[i, 0, top : top + h, left : left + w] = 2.0
        boxes[i] = torch.tensor([top, left, top + h, left + w])
    return x, y, boxes


def pointing_rate(maps: torch.Tensor, boxes: torch.Tensor, margin: int = 1) -> float:
    """Share of maps (n, h, w) whose maximum lies on the box (grown by ``margin`` pixels); a map coarser
    than the image hits when the cell of its maximum overlaps the box."""
    n, h, w = maps.shape
    sy, sx = SIZE / h, SIZE / w
    hits = 0
    for m, (t, l, b, r) in zip(maps, boxes.tolist()):
        i, j = divmod(int(m.flatten().argmax()), w)
        y0, y1, x0, x1 = i * sy, (i + 1) * sy, j * sx, (j + 1) * sx  # the cell, in pixels
        hits += y0 < b + margin and y1 > t - margin and x0 < r + margin and x1 > l - margin
    return hits / n


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
    )  # fmt: skip


def tiny_vit() -> nn.Module:
    cfg = ViTConfig(patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_dim=64, img_size=SIZE)
    return VisionTransformer(cfg, num_classes=2, in_chans=1)


def train(model: nn.Module, steps: int, lr: float) -> nn.Module:
    x, y, _ = make_data(1024, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return make_data(200, seed=3)


def test_grad_cam_points_at_the_bar_and_random_weights_do_not(test_set) -> None:
    x, y, boxes = test_set
    torch.manual_seed(0)
    model = train(tiny_cnn(), steps=60, lr=3e-3)
    assert (model(x).argmax(1) == y).float().mean() >= 0.95  # the model has learnt the task
    trained = pointing_rate(grad_cam(model, x, "6", y), boxes)  # "6": the last ReLU, 8x8
    torch.manual_seed(1)
    random = pointing_rate(grad_cam(tiny_cnn().eval(), x, "6", y), boxes)
    assert trained >= 0.9, trained
    assert random < 0.9 and random < trained - 0.2, (random, trained)


def test_vit_rollout_points_at_the_bar_and_random_weights_do_not(test_set) -> None:
    x, y, boxes = test_set
    torch.manual_seed(0)
    model = train(tiny_vit(), steps=120, lr=2e-3)
    assert (model(x).argmax(1) == y).float().mean() >= 0.9
    trained = pointing_rate(attention_rollout(model, x), boxes)
    torch.manual_seed(1)
    random = pointing_rate(attention_rollout(tiny_vit().eval(), x), boxes)
    assert trained >= 0.8, trained
    assert random < 0.8 and random < trained - 0.2, (random, trained)
