"""GoogLeNet (Inception-v1): Szegedy et al. 2014, "Going Deeper with Convolutions", arXiv:1409.4842
(CVPR 2015).

Builds the 22-layer network of the paper's Table 1: a stem, nine Inception modules (parallel 1x1, 1x1 -> 3x3,
1x1 -> 5x5 and 3x3-max-pool -> 1x1 branches, the 1x1 "reduce" convolutions cutting the cost of the larger
ones) and a global-average-pool classifier, with the two auxiliary classifiers of Sec. 5 on 4a and 4d.
Headline numbers: 12x fewer parameters than AlexNet within a budget of 1.5 billion multiply-adds (Sec. 1);
10.07% top-5 validation error for one network on one crop, 6.67% top-5 test error for the seven-network,
144-crop entry (Sec. 7).

Two forms:
- ``googlenet``: torchvision's layout, so its ImageNet checkpoint (ported from TensorFlow) loads. Every
  convolution is ``BasicConv2d`` = conv (no bias) -> BatchNorm (eps 0.001) -> ReLU; the "5x5" branch uses a
  3x3 kernel (a known torchvision quirk kept for the checkpoint, pytorch/vision#906); the max-pool after 4e is
  2x2 / 2; the classifier has dropout 0.2. 6,624,904 parameters without the auxiliary heads, 13,004,888 with
  them (the spec counts the former, ``aux_logits=False``). ``transform_input=True`` re-normalises inputs
  from ImageNet mean / std to the [-1, 1] scaling the ported weights expect, as torchvision does.
- ``googlenet_paper``: the paper's network: true 5x5 branches, convolutions with biases and no batch norm,
  local response normalisation after the first max-pool and after conv3 (Fig. 3), a 3x3 / 2 max-pool after
  4e (Table 1), dropout 0.4 before the classifier; 6,998,552 parameters without the auxiliary heads.

Auxiliary classifiers (Sec. 5): 5x5 / 3 average pool -> 1x1 conv 128 -> fc 1024 -> dropout 0.7 -> fc classes,
their losses added with weight 0.3. In training mode the model returns ``AuxOutputs(logits, aux=(aux1,
aux2), aux_weight=0.3)``; in eval mode plain logits. ``aux_logits=False`` removes the heads.

Departures from the paper, and why:
- ``googlenet``: torchvision's layout as listed above, and its auxiliary heads pool with
  ``adaptive_avg_pool2d(4)`` rather than 5x5 / 3 (the two differ slightly at 14x14); its initialisation is
  torchvision's (N(0, 0.01^2) truncated at +-2, BN weight 1 / bias 0).
- ``googlenet_paper``: the paper gives neither the LRN constants nor an initialisation. We take both from the
  BVLC Caffe reference model of GoogLeNet: LRN n=5, alpha=1e-4 / 5 on the plain sum (Caffe divides by n),
  beta 0.75, k=1; "xavier" (uniform +-sqrt(3 / fan_in)) weights, biases 0.2 in convolutions and hidden
  fully connected layers, 0 in the classifiers. That model reads mean-subtracted 0-255 pixels, the scale
  its LRN constants need, so the model multiplies its standardised input by ``RAW_PIXEL_SCALE`` first
  (``input_scale``; :mod:`imgcls.models.layers.lrn`): otherwise its LRN would divide by a constant. The
  final 7x7 average pool is a global average pool (the same at 224x224), and the stride-2 max-pools use
  ceil mode instead of "same" padding, as torchvision does (identical output sizes: 112 -> 56 -> 28 -> 14
  -> 7).
- Small-image form (``small_input=True``, picked by ``create_model(..., image_size=28 or 32)``), an adaptation
  of ours: conv1 becomes 3x3 / stride 1 and the max-pool after it is dropped, so a 32x32 image reaches the
  Inception 3 modules at 16x16, 4 at 8x8 and 5 at 4x4 (28x28: 14, 7, and 4, or 3 after the paper's 3x3
  pool); the auxiliary heads pool adaptively to 4x4 (a 5x5 / 3 pool needs at least 5x5 maps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers.lrn import RAW_PIXEL_SCALE, LocalResponseNorm
from imgcls.models.registry import AuxOutputs, Variant, register_family

__all__ = ["BasicConv2d", "GoogLeNet", "GoogLeNetConfig", "Inception", "InceptionAux", "INCEPTION_TABLE"]

# Table 1 of the paper: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) of each Inception module.
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
_POOL_BEFORE = {"4a", "5a"}  # a max-pool precedes these modules (after 3b and after 4e)


@dataclass(frozen=True)
class GoogLeNetConfig:
    batch_norm: bool  # torchvision's BasicConv2d (conv without bias -> BN) instead of conv with bias
    branch3_kernel: int  # kernel of the "5x5" branch: 5 in the paper, 3 in torchvision
    lrn: bool  # LRN after the first max-pool and after conv3 (paper Fig. 3)
    pool4_kernel: int  # max-pool after 4e: 3x3 / 2 in Table 1, 2x2 / 2 in torchvision
    aux_pool: Literal["paper", "adaptive"]  # 5x5 / 3 average pool, or torchvision's adaptive 4x4
    drop_rate: float  # before the classifier: 0.4 paper, 0.2 torchvision
    init: Literal["torchvision", "caffe"]
    aux_drop_rate: float = 0.7
    # Multiply the (standardised) input by this first: RAW_PIXEL_SCALE gives the mean-subtracted 0-255 pixels
    # of the Caffe model, which its LRN constants and init assume (imgcls.models.layers.lrn); None: as it is.
    input_scale: float | None = None


# Parameters at 1000 classes without the auxiliary heads (the registry's figure; NUM_PARAMS_WITH_AUX below
# counts them too).
VARIANTS: dict[str, Variant] = {
    "googlenet": Variant(
        GoogLeNetConfig(batch_norm=True, branch3_kernel=3, lrn=False, pool4_kernel=2, aux_pool="adaptive",
                        drop_rate=0.2, init="torchvision"),
        6_624_904,
        "torchvision 0.28 googlenet (num_params without aux; acc@1, GFLOPS of its IMAGENET1K_V1 weights)",
        gmacs=1.50, top1=69.778,
    ),
    "googlenet_paper": Variant(
        GoogLeNetConfig(batch_norm=False, branch3_kernel=5, lrn=True, pool4_kernel=3, aux_pool="paper",
                        drop_rate=0.4, init="caffe", input_scale=RAW_PIXEL_SCALE),
        6_998_552,
        "Szegedy et al. 2014, Table 1 with biases (counted from the layer sizes, auxiliary heads excluded)",
    ),
}  # fmt: skip
# With both auxiliary heads, at 1000 classes: torchvision's googlenet figure, and counted from the layer sizes.
NUM_PARAMS_WITH_AUX: dict[str, int] = {"googlenet": 13_004_888, "googlenet_paper": 13_378_280}


class BasicConv2d(nn.Module):
    """conv -> (BN) -> ReLU with torchvision's attribute names ``conv`` / ``bn``; without BN, a conv bias.

    Checkpoint keys need these names; :class:`imgcls.models.layers.ConvNormAct` names its children 0 / 1 / 2.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_chs, eps=0.001) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Fig. 2(b): four parallel branches concatenated along channels."""

    def __init__(
        self,
        in_chs: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        branch3_kernel: int = 5,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        bn = batch_norm
        self.branch1 = BasicConv2d(in_chs, ch1x1, 1, batch_norm=bn)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_chs, ch3x3red, 1, batch_norm=bn),
            BasicConv2d(ch3x3red, ch3x3, 3, padding=1, batch_norm=bn),
        )
        k = branch3_kernel
        self.branch3 = nn.Sequential(
            BasicConv2d(in_chs, ch5x5red, 1, batch_norm=bn),
            BasicConv2d(ch5x5red, ch5x5, k, padding=k // 2, batch_norm=bn),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_chs, pool_proj, 1, batch_norm=bn),
        )
        self.out_chs = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Sec. 5 auxiliary classifier: avg pool to 4x4 -> 1x1 conv 128 -> fc 1024 -> ReLU -> dropout -> fc."""

    def __init__(
        self,
        in_chs: int,
        num_classes: int,
        *,
        batch_norm: bool = True,
        pool: str = "adaptive",
        drop_rate: float = 0.7,
    ) -> None:
        super().__init__()
        self.pool: nn.Module = nn.AvgPool2d(5, stride=3) if pool == "paper" else nn.AdaptiveAvgPool2d(4)
        self.conv = BasicConv2d(in_chs, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.drop_rate = drop_rate
        self.fc2: nn.Module = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x)).flatten(1)  # (B, C, 14, 14) -> (B, 128, 4, 4) -> (B, 2048)
        x = F.dropout(F.relu(self.fc1(x), inplace=True), self.drop_rate, self.training)
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """GoogLeNet with torchvision's attribute names (``conv1`` .. ``inception5b``, ``aux1``, ``aux2``,
    ``fc``)."""

    def __init__(
        self,
        cfg: GoogLeNetConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = True,
        transform_input: bool = False,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ConfigError(
                f"transform_input re-normalises RGB ImageNet inputs; it needs in_chans=3, got {in_chans}"
            )
        self.cfg = cfg
        self.transform_input = transform_input
        bn = cfg.batch_norm

        def maxpool(k: int = 3) -> nn.MaxPool2d:
            return nn.MaxPool2d(k, stride=2, ceil_mode=True)  # ceil: 112 -> 56 -> 28 -> 14 -> 7 as in Table 1

        def lrn() -> nn.Module:
            # BVLC Caffe reference values; Caffe's alpha 1e-4 is divided by n = 5 (see module docstring).
            return LocalResponseNorm(5, alpha=1e-4 / 5, beta=0.75, k=1.0) if cfg.lrn else nn.Identity()

        if small_input:
            self.conv1 = BasicConv2d(in_chans, 64, 3, stride=1, padding=1, batch_norm=bn)
            self.maxpool1: nn.Module = nn.Identity()
        else:
            self.conv1 = BasicConv2d(in_chans, 64, 7, stride=2, padding=3, batch_norm=bn)
            self.maxpool1 = maxpool()
        self.lrn1 = lrn()
        self.conv2 = BasicConv2d(64, 64, 1, batch_norm=bn)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, batch_norm=bn)
        self.lrn2 = lrn()
        self.maxpool2 = maxpool()
        cin = 192
        for name, row in INCEPTION_TABLE.items():
            if name == "4a":
                self.maxpool3 = maxpool()
            elif name == "5a":
                self.maxpool4 = maxpool(cfg.pool4_kernel)
            block = Inception(cin, *row, branch3_kernel=cfg.branch3_kernel, batch_norm=bn)
            setattr(self, f"inception{name}", block)
            cin = block.out_chs
        aux_pool = "adaptive" if small_input else cfg.aux_pool
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if aux_logits:
            kw = {"batch_norm": bn, "pool": aux_pool, "drop_rate": cfg.aux_drop_rate}
            self.aux1 = InceptionAux(self.inception4a.out_chs, num_classes, **kw)
            self.aux2 = InceptionAux(self.inception4d.out_chs, num_classes, **kw)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.drop_rate)
        self.num_features = cin
        self.fc: nn.Module = self._make_fc(num_classes)
        self.init_weights()

    def _make_fc(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def init_weights(self) -> None:
        """``torchvision``: conv / linear weights N(0, 0.01^2) truncated to [-2, 2] (torchvision's GoogLeNet),
        BN weight 1, bias 0. ``caffe``: BVLC reference GoogLeNet: weights uniform +-sqrt(3 / fan_in) (Caffe's
        "xavier"), biases 0.2, except the classifiers (``fc``, ``aux*.fc2``) whose biases are 0."""
        classifiers = {id(self.fc)} | {id(a.fc2) for a in (self.aux1, self.aux2) if a is not None}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if self.cfg.init == "torchvision":
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2.0, b=2.0)
                else:
                    bound = (3.0 / m.weight[0].numel()) ** 0.5
                    nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    caffe_hidden = self.cfg.init == "caffe" and id(m) not in classifiers
                    nn.init.constant_(m.bias, 0.2 if caffe_hidden else 0.0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier and the auxiliary heads' last layers (they predict the same classes)."""
        self.fc = self._make_fc(num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.input_scale is not None:
            x = x * self.cfg.input_scale  # standardised -> mean-subtracted 0-255 pixels (the Caffe model's)
        if not self.transform_input:
            return x
        # x was normalised with ImageNet mean / std; the ported weights expect (pixel - 0.5) / 0.5.
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def _trunk(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        aux: list[torch.Tensor] = []
        x = self._transform_input(x)
        x = self.lrn1(self.maxpool1(self.conv1(x)))  # (B, 64, 56, 56) at 224x224
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))  # (B, 192, 28, 28)
        for name in INCEPTION_TABLE:
            if name in _POOL_BEFORE:
                x = self.maxpool3(x) if name == "4a" else self.maxpool4(x)  # 28 -> 14, 14 -> 7
            x = getattr(self, f"inception{name}")(x)
            if with_aux and name == "4a" and self.aux1 is not None:
                aux.append(self.aux1(x))
            if with_aux and name == "4d" and self.aux2 is not None:
                aux.append(self.aux2(x))
        return x, aux  # (B, 1024, 7, 7) at 224x224

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._trunk(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, 1024, H, W) -> (B, 1024)
        if pre_logits:
            return x
        return self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | AuxOutputs:
        with_aux = self.training and self.aux1 is not None
        x, aux = self._trunk(x, with_aux)
        logits = self.forward_head(x)
        if with_aux:
            return AuxOutputs(logits, aux=tuple(aux), aux_weight=0.3)  # Sec. 5: auxiliary losses weighted 0.3
        return logits


register_family(
    "googlenet",
    GoogLeNet,
    VARIANTS,
    cam_layer="inception5b",
    ref_kwargs={"num_classes": 1000, "aux_logits": False},
    test_input_size=(3, 32, 32),
    test_kwargs={"small_input": True},
    small_input_kwargs={"small_input": True},
)
