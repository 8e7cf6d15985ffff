"""Pixel classifiers without convolutions: a linear softmax classifier and a small multilayer perceptron.

The baselines of the Fashion-MNIST benchmark (Xiao, Rasul, Vollgraf, "Fashion-MNIST: a Novel Image Dataset
for Benchmarking Machine Learning Algorithms", 2017, arXiv:1708.07747, Table 3): scikit-learn's
``LogisticRegression`` (best test accuracy 0.842) and ``MLPClassifier`` with one hidden layer of 100 ReLU
units (scikit-learn's default ``hidden_layer_sizes=(100,)``, one of the table's settings). Built here as
imgcls models, trained by the imgcls trainer (SGD or AdamW on the cross-entropy, the softmax being the
multinomial logistic model) instead of scikit-learn's L-BFGS / Adam: same models, another optimiser.

Contract: ``forward_features`` flattens the image to ``(B, C*H*W)`` and, for the MLP, applies the hidden
layers; ``forward_head`` is the final linear layer (``pre_logits=True`` returns its input).

Departure, so that the models train on any dataset: the weights are sized for ``input_size`` (H, W),
default 28x28; an image of another size is first resampled to it by area averaging (adaptive average
pooling), which is linear, so the linear model stays linear in the pixels. ``imgcls baseline linear|mlp``
passes the dataset's own size, so no resampling happens there. The same models serve as linear probes on
feature vectors: ``in_chans=D, input_size=(1, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.registry import Variant, register_family

__all__ = ["LinearConfig", "PixelMLP"]


@dataclass(frozen=True)
class LinearConfig:
    hidden: tuple[int, ...] = ()  # hidden layer widths; () is the linear softmax classifier


# Xiao et al. 2017, Table 3 (Fashion-MNIST, scikit-learn baselines): one row per model we rebuild.
# Parameters at 10 classes, 1x28x28 (the source says how they add up); top-1: Table 3 test accuracy (%) on
# Fashion-MNIST, not ImageNet.
VARIANTS: dict[str, Variant] = {
    "linear_softmax": Variant(LinearConfig(hidden=()), 7_850, "784*10+10", top1=84.2),  # LogisticRegression
    # MLPClassifier relu hidden_layer_sizes=(100,); its accuracy is left out until checked against the table
    "mlp": Variant(LinearConfig(hidden=(100,)), 79_510, "784*100+100 + 100*10+10"),
}


class PixelMLP(nn.Module):
    """Flatten -> (Linear -> ReLU) per hidden width -> Linear. No hidden layer: multinomial logistic model."""

    def __init__(
        self,
        cfg: LinearConfig,
        num_classes: int = 10,
        in_chans: int = 1,
        input_size: Sequence[int] = (28, 28),
    ) -> None:
        super().__init__()
        size = tuple(int(s) for s in input_size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"input_size must be (H, W) with positive sides, got {tuple(input_size)}")
        self.cfg = cfg
        self.input_size = size
        widths = (in_chans * size[0] * size[1], *cfg.hidden)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.num_features = widths[-1]
        self.head = self._make_head(num_classes)
        # Initialisation: PyTorch's nn.Linear default (Kaiming-uniform with a = sqrt(5)), as torchvision's
        # MLP heads; scikit-learn's Glorot-uniform differs only in scale.

    def _make_head(self, num_classes: int) -> nn.Module:
        # num_classes 0: no classifier, forward returns the features (the model contract)
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        self.head = self._make_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.adaptive_avg_pool2d(x, self.input_size)  # area resampling: see the module docstring
        return self.features(x.flatten(1))  # (B, C, H, W) -> (B, C*H*W) -> (B, hidden[-1])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


register_family(
    "linear",
    PixelMLP,
    VARIANTS,
    cam_layer=None,  # no spatial layer: Grad-CAM does not apply
    input_size=(1, 28, 28),
    ref_kwargs={"num_classes": 10, "in_chans": 1},
    test_input_size=(1, 28, 28),
)
