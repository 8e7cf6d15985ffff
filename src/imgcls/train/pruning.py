"""Leaving well-learned images out of an epoch: InfoBatch's unbiased dynamic data pruning.

Qin et al., "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data Pruning", ICLR 2024
(arXiv:2303.04947). Each training image keeps a score, its loss when it was last trained on. An epoch
leaves out, at random with probability ``p``, each image whose score is below the mean score (the images the
model already gets right), and the images of that group it keeps count ``1 / (1 - p)`` in the loss, so the
expected gradient of the epoch is that of the whole data. The first epoch (no scores yet) and the last
(the paper's annealing: the last epochs see all the data, which removes what bias the stale scores leave)
train on every image.

On Fashion-MNIST, after the first epoch 59-82% of the images score below the mean (the loss is skewed:
most images are easy, a few are hard), so ``p = 0.5`` leaves out 30-41% of a middle epoch; the fast preset's
6 epochs then take 475 steps instead of 630, and lost 0.2-0.3 points of test accuracy, which is why it is
off unless asked for (``--prune-easy``; README, "Speed: the main job").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["EasyPruner"]


def _seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, 0x1B]).generate_state(1)[0])


class EasyPruner:
    """The scores of ``n`` training images and the plan of each epoch (which images, with which loss weight).

    The plan is a pure function of ``(seed, epoch, scores)``: a resumed run, given the saved scores, plans
    the epochs it has left as the uninterrupted run would.
    """

    def __init__(self, n: int, prob: float, num_epochs: int, seed: int) -> None:
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"the pruning probability must be in [0, 1), got {prob}")
        self.n, self.prob, self.num_epochs, self.seed = n, prob, num_epochs, seed
        self.scores = torch.full((n,), float("nan"))  # NaN: not trained on yet (never left out)
        self.weights = torch.ones(n)  # the current epoch's loss weight of each image
        self._fresh = torch.zeros(n)  # losses recorded this epoch, merged into scores by end_epoch
        self._count = torch.zeros(n)

    def prunes(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) leaves images out: not the first, not the last."""
        return self.prob > 0 and 0 < epoch < self.num_epochs - 1

    def plan(self, epoch: int) -> torch.Tensor | None:
        """The sorted indices of the images ``epoch`` trains on (None: all of them); sets their weights."""
        self.weights = torch.ones(self.n)
        if not self.prunes(epoch):
            return None
        seen = ~torch.isnan(self.scores)
        if not seen.any():
            return None
        easy = seen & (self.scores < self.scores[seen].mean())
        draw = torch.rand(self.n, generator=torch.Generator().manual_seed(_seed(self.seed, epoch)))
        drop = easy & (draw < self.prob)
        self.weights[easy & ~drop] = 1.0 / (1.0 - self.prob)
        return (~drop).nonzero().squeeze(1)

    def record(self, index: torch.Tensor, losses: torch.Tensor) -> None:
        """The per-image training losses of a batch (``index``: the images' dataset indices)."""
        index = index.cpu()
        self._fresh[index] = losses.detach().float().cpu()
        self._count[index] = 1.0

    def end_epoch(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Take this epoch's losses as the scores; ``reduce`` (a sum over processes) first merges what each
        process recorded of its share of the batches."""
        both = torch.stack([self._fresh, self._count])
        if reduce is not None:
            both = reduce(both)
        fresh, count = both[0], both[1]
        done = count > 0
        self.scores[done] = fresh[done] / count[done]
        self._fresh.zero_()
        self._count.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"scores": self.scores.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        scores = state["scores"]
        if not isinstance(scores, torch.Tensor) or scores.shape != (self.n,):
            raise ValueError(
                f"pruning scores of shape {getattr(scores, 'shape', None)}, expected ({self.n},)"
            )
        self.scores = scores.float().clone()
