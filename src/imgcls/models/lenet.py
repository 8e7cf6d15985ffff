"""LeNet-5: LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning Applied to Document Recognition",
Proc. IEEE 86(11) (no arXiv id; the paper predates arXiv's cs section).

Builds the convolutional network of the paper's Fig. 2 as printed (``lenet5``) and its common modern reading
(``lenet5_modern``). Headline numbers: 60,000 trainable parameters (Sec. II-B); 0.95% test error on MNIST
without distortions, 0.8% with them (Sec. III-C).

``lenet5`` follows the paper layer by layer on a 32x32 input: C1 (6 maps, 5x5), S2 (each unit sums a 2x2
block, multiplies it by one trainable coefficient per map, adds one trainable bias per map), C3 (16 maps,
5x5, each seeing only the S2 maps of Table I: 60 connections, 1,516 parameters), S4 (as S2), C5 (120 maps,
5x5, so 1x1 on a 32x32 input), F6 (84 units). Every layer up to F6 is followed by the squashing function of
Appendix A, ``f(a) = A tanh(S a)`` with A = 1.7159, S = 2/3. The output layer is the Euclidean RBF layer of
Eq. (7), ``y_i = sum_j (x_j - w_ij)^2``, with fixed (not trained) +-1 target codes of 84 = 7x12 bits. Weights
are drawn uniformly from [-2.4/F, 2.4/F], F the unit's fan-in (Appendix A).

Departures from the paper, and why:
- Output sign: the model returns ``-y`` (the negative squared distances), so ``softmax`` / cross-entropy can
  be used on it directly. The paper trains with the MAP criterion of Eq. (9),
  ``E = y_D + log(exp(-j) + sum_i exp(-y_i))``; cross-entropy on ``-y`` is exactly Eq. (9) with the
  "rubbish class" constant ``j`` taken to infinity. Plain MSE on ``y_D`` (the paper's Eq. 8) can be had as
  ``-logits[target]``.
- RBF codes: the paper's codes are 7x12 bitmaps of stylised ASCII characters (Fig. 3), which cannot be
  reproduced exactly. We use fixed deterministic +-1 codes instead: the rows of the 84x84 Paley Hadamard
  matrix (q = 83), so any two codes differ in exactly 42 of the 84 bits; classes 84-167 take the negated
  rows, any further classes seeded random +-1 codes. The codes are a buffer, not parameters: the paper
  also chose its codes by hand and kept them fixed.
- Input size: the paper's input is a 32x32 field with the 20x20 MNIST digit centred in it. Inputs smaller
  than 32x32 (e.g. 28x28 MNIST / Fashion-MNIST) are padded to 32x32 by replicating the border pixels, which
  for images whose border is background extends the background whatever the input normalisation (the paper
  normalised background to -0.1 and foreground to 1.175: that is the data pipeline's job). Larger inputs
  are rejected: C5 would no longer be 1x1 and F6's fan-in would change.
- Biases start at zero (the paper's initialisation rule names weights only).
- The Sec. II-B "trainable coefficient" of S2/S4 shares the same +-2.4/F rule with F = 4 (the 2x2 inputs).

``lenet5_modern`` is the reading found in today's tutorials: ReLU instead of the squashing function, 2x2
max-pooling instead of trainable subsampling, a fully connected C3 (16 x 6 maps) and a plain linear output
layer; PyTorch's default initialisation. It has 61,706 parameters at 10 classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.registry import Variant, register_family

__all__ = [
    "C3_TABLE",
    "ConnectionTableConv2d",
    "LeNet5",
    "LeNetConfig",
    "RBFOutput",
    "ScaledTanh",
    "TrainableSubsample",
    "rbf_codes",
]


@dataclass(frozen=True)
class LeNetConfig:
    """One LeNet-5 reading: the paper's (all flags True) or the modern one (all False)."""

    squash: bool  # A tanh(S a) after every layer up to F6 (paper) instead of ReLU
    trainable_subsampling: bool  # S2/S4: 2x2 sum * coefficient + bias (paper) instead of 2x2 max-pool
    c3_table: bool  # C3 sees the S2 maps of Table I (paper) instead of all six
    rbf_output: bool  # Euclidean RBF output with fixed codes (paper) instead of a linear layer
    widths: tuple[int, int, int, int] = (6, 16, 120, 84)  # C1, C3, C5, F6
    input_size: int = 32


# Sec. II-B / Table I: which of the 6 S2 maps each of the 16 C3 maps sees. Maps 0-5 take 3 contiguous S2
# maps, 6-11 take 4 contiguous, 12-14 take 4 discontinuous, 15 takes all 6 (indices wrap around).
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip

# The paper has no table of variants; one row for the network of Fig. 2 and one for the modern reading.
# Parameters at 10 classes / 1 channel; top-1 on MNIST.
VARIANTS: dict[str, Variant] = {
    "lenet5": Variant(
        LeNetConfig(squash=True, trainable_subsampling=True, c3_table=True, rbf_output=True),
        60_000,
        "LeCun et al. 1998, Sec. II-B (60,000 parameters); Sec. III-C (0.95% MNIST test error)",
        top1=99.05,
    ),
    "lenet5_modern": Variant(
        LeNetConfig(squash=False, trainable_subsampling=False, c3_table=False, rbf_output=False),
        61_706,
        "counted from the layer sizes of the modern reading of LeCun et al. 1998, Fig. 2",
    ),
}


class ScaledTanh(nn.Module):
    """The squashing function of Appendix A: ``f(a) = A tanh(S a)``, A = 1.7159, S = 2/3 (so f(+-1) = +-1)."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2 / 3) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)


class TrainableSubsample(nn.Module):
    """S2 / S4 of Sec. II-B: the four inputs of a 2x2 block are added, multiplied by a trainable coefficient
    and added to a trainable bias, one coefficient and one bias per feature map (2 parameters per map)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.avg_pool2d(x, 2) * 4  # (B, C, H, W) -> (B, C, H/2, W/2): sum of each 2x2 block
        return s * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConnectionTableConv2d(nn.Module):
    """A convolution where output map ``o`` sees only the input maps ``table[o]`` (LeNet-5's C3, Table I).

    Only the connected kernels are parameters (``weight`` is (connections, k, k)); the full
    (out, in, k, k) kernel is assembled with zeros elsewhere at each forward pass.
    """

    def __init__(self, in_chs: int, table: Sequence[Sequence[int]], kernel_size: int = 5) -> None:
        super().__init__()
        self.table = tuple(tuple(ins) for ins in table)
        self.in_chs = in_chs
        self.out_chs = len(table)
        self.kernel_size = kernel_size
        out_idx = [o for o, ins in enumerate(table) for _ in ins]
        in_idx = [i for ins in table for i in ins]
        if any(not 0 <= i < in_chs for i in in_idx):
            raise ConfigError(f"connection table refers to input maps outside 0..{in_chs - 1}")
        self.register_buffer("out_idx", torch.tensor(out_idx, dtype=torch.long), persistent=False)
        self.register_buffer("in_idx", torch.tensor(in_idx, dtype=torch.long), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(in_idx), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(self.out_chs))
        nn.init.uniform_(self.weight, -0.1, 0.1)  # placeholder; the model's init_weights sets the real values

    def connection_fan_in(self) -> list[int]:
        """For each connection (row of ``weight``), the fan-in of the output unit it feeds: maps x k x k."""
        return [len(ins) * self.kernel_size**2 for ins in self.table for _ in ins]

    def full_weight(self) -> torch.Tensor:
        """The (out, in, k, k) kernel with zeros where the table has no connection."""
        k = self.kernel_size
        w = self.weight.new_zeros(self.out_chs, self.in_chs, k, k)
        return w.index_put((self.out_idx, self.in_idx), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.full_weight(), self.bias)


def _paley_hadamard(q: int = 83) -> torch.Tensor:
    """The (q+1) x (q+1) Hadamard matrix of Paley's first construction, q a prime = 3 (mod 4)."""
    residues = {(i * i) % q for i in range(1, q)}
    chi = torch.tensor([0] + [1 if a in residues else -1 for a in range(1, q)], dtype=torch.float32)
    idx = torch.arange(q)
    jacobsthal = chi[(idx[None, :] - idx[:, None]) % q]  # Q[i, j] = chi(j - i)
    s = torch.zeros(q + 1, q + 1)
    s[0, 1:] = 1
    s[1:, 0] = -1
    s[1:, 1:] = jacobsthal
    return s + torch.eye(q + 1)  # H = I + S, H @ H.T = (q + 1) I


def rbf_codes(num_classes: int, bits: int = 84) -> torch.Tensor:
    """Fixed +-1 target codes (num_classes, bits) for the RBF output layer, see the module docstring."""
    if bits != 84:
        raise ConfigError(f"rbf_codes makes 84-bit (7x12) codes, got bits={bits}")
    h = _paley_hadamard(83)
    codes = torch.cat([h, -h])
    if num_classes > len(codes):
        g = torch.Generator().manual_seed(1998)
        extra = torch.randint(0, 2, (num_classes - len(codes), bits), generator=g).float() * 2 - 1
        codes = torch.cat([codes, extra])
    return codes[:num_classes].clone()


class RBFOutput(nn.Module):
    """Euclidean RBF units (Eq. 7) with fixed codes: returns ``-y_i = -sum_j (x_j - w_ij)^2`` (B, K)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("codes", rbf_codes(num_classes, in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x[:, None, :] - self.codes[None]  # (B, 1, F) - (1, K, F) -> (B, K, F)
        return -(diff * diff).sum(-1)


class LeNet5(nn.Module):
    """LeNet-5 (paper or modern reading) on inputs up to 32x32; smaller inputs are padded to 32x32."""

    def __init__(self, cfg: LeNetConfig, *, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        c1, c3, c5, f6 = cfg.widths

        def act() -> nn.Module:
            return ScaledTanh() if cfg.squash else nn.ReLU(inplace=True)

        def pool(c: int) -> nn.Module:
            return TrainableSubsample(c) if cfg.trainable_subsampling else nn.MaxPool2d(2)

        conv3: nn.Module = ConnectionTableConv2d(c1, C3_TABLE, 5) if cfg.c3_table else nn.Conv2d(c1, c3, 5)

        def pool_act() -> nn.Module:  # the paper squashes the subsampling output too (Sec. II-B)
            return act() if cfg.trainable_subsampling else nn.Identity()

        # 32 -> C1 28 -> S2 14 -> C3 10 -> S4 5 -> C5 1
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, 5), act(), pool(c1), pool_act(),
            conv3, act(), pool(c3), pool_act(),
            nn.Conv2d(c3, c5, 5), act(),
        )  # fmt: skip
        self.f6 = nn.Sequential(nn.Linear(c5, f6), act())
        self.num_features = f6
        self.num_classes = num_classes
        self.head = self._make_output(num_classes)
        self.init_weights()

    def _make_output(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        if self.cfg.rbf_output:
            return RBFOutput(self.num_features, num_classes)
        return nn.Linear(self.num_features, num_classes)

    def init_weights(self) -> None:
        """Paper: uniform in [-2.4/F, 2.4/F], F the fan-in (Appendix A), biases 0. Modern: PyTorch's."""
        if not self.cfg.squash:
            return  # lenet5_modern keeps PyTorch's default (Kaiming-uniform, a=sqrt(5)) initialisation
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                nn.init.uniform_(m.weight, -2.4 / fan_in, 2.4 / fan_in)
                nn.init.zeros_(m.bias)
            elif isinstance(m, ConnectionTableConv2d):
                bound = torch.tensor([2.4 / f for f in m.connection_fan_in()], device=m.weight.device)
                with torch.no_grad():
                    m.weight.uniform_(-1, 1).mul_(bound.view(-1, 1, 1))  # per connection: (n,) -> (n, 1, 1)
                nn.init.zeros_(m.bias)
            elif isinstance(m, TrainableSubsample):
                nn.init.uniform_(m.weight, -2.4 / 4, 2.4 / 4)  # fan-in 4: the 2x2 block
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = self._make_output(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        size = self.cfg.input_size
        H, W = x.shape[-2:]
        if H > size or W > size:
            raise ConfigError(f"LeNet-5 takes images up to {size}x{size}, got {H}x{W}: resize them first")
        if H < size or W < size:
            top, left = (size - H) // 2, (size - W) // 2
            x = F.pad(x, (left, size - W - left, top, size - H - top), mode="replicate")  # centre in 32x32
        return self.features(x)  # (B, 120, 1, 1): C5

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.f6(x.flatten(1))  # (B, 120, 1, 1) -> (B, 120) -> F6 (B, 84)
        if pre_logits:
            return x
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


register_family(
    "lenet",
    LeNet5,
    VARIANTS,
    cam_layer="features.5",
    input_size=(1, 32, 32),
    ref_kwargs={"num_classes": 10, "in_chans": 1},
)
