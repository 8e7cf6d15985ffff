"""Nearest-neighbour and k-nearest-neighbour classification: exact, batched, in bounded memory.

The rule: Cover and Hart, "Nearest neighbor pattern classification", IEEE Transactions on Information Theory
13(1), 1967 (1-NN; k-NN after Fix and Hodges, 1951). A query takes the majority class of its ``k`` nearest
training samples under L2 (Euclidean), L1 (Manhattan) or cosine distance (``1 - cos``), each vote weighted 1
(``weights="uniform"``) or by the inverse distance (``"distance"``; as scikit-learn, a query at distance 0
from some training samples takes the votes of those alone).

Determinism, documented because scikit-learn leaves both to floating-point noise:

- Neighbours at equal distance are ordered by training index (a stable sort of the exact distances).
- Vote ties (``tie_break="nearest"``, the default) go to the tied class whose nearest member among the ``k``
  neighbours is closest, i.e. comes first in that order; two classes cannot share a neighbour, so no tie is
  left. ``tie_break="label"`` takes the smallest tied label instead, as scikit-learn's ``predict`` does.
- :meth:`KNeighborsClassifier.predict_topk` ranks classes by vote, ties as above; classes without votes come
  last, smallest label first.

How the search is exact and fast. A brute force is ``Q x N x D`` work (Fashion-MNIST: 10,000 x 60,000 x 784),
and a float32 matrix product is the fastest way to do it on every CPU. We do less of it: a *lower bound* of
every distance comes from a matrix product of ``rank + 1 = 65`` columns instead of ``D``, and only the few
samples whose bound could beat the k-th neighbour get their exact distance.

1. Embedding. Each metric maps samples to ``e(x)`` with ``|e(a) - e(b)|^2 <= dist(a, b)``:
   L2 (squared) the data itself; cosine ``x / (|x| sqrt 2)`` (then equality: ``1 - cos``); L1 four *pieces*
   per feature, ``p_j(x) = clamp(x - lo - j w, 0, w) / sqrt(w)`` with ``w`` a quarter of the feature's
   training range: ``|a - b| = sum_j |dp_j| sqrt(w)`` and every ``|dp_j| sqrt(w) <= w``, so
   ``|a - b| >= sum_j dp_j^2``. (A query outside the training range is clamped to it, which only brings
   it closer to every training sample.)
2. Bound. The centred embeddings are split into their coordinates on ``rank`` orthonormal principal
   directions and the norm of the remainder; ``(p, |rest|)`` of two samples give
   ``|p(a) - p(b)|^2 + (|rest(a)| - |rest(b)|)^2 <= |e(a) - e(b)|^2`` (the remainders' difference is at least
   the difference of their norms). One ``addmm`` gives this for a chunk of queries against the whole
   training set, in float32, with a rounding-error margin.
3. Search. The ``2k`` smallest bounds of a query give ``2k`` exact distances whose k-th, ``U``, is at least
   the true k-th distance. Every sample whose bound is at most ``U`` (plus the margin) is a candidate, which
   includes every sample at distance ``<= U``; candidates get their exact distance (8-bit pixels: in
   integers, so equal distances are exactly equal; else float64), and the ``k`` smallest by (distance,
   index) are the answer. On Fashion-MNIST a query has a few hundred candidates under L2 and a few
   thousand under L1, out of 60,000.

Pixels (:func:`pixel_grid`: uint8, integers in 0..255, or floats on the 1/255 grid as ``ToTensor`` makes
them) are searched as their 8-bit codes, distances reported in the units given. Memory: a chunk of queries
holds its bounds against the training set (4 bytes a pair) and their comparison; chunks and the candidates
checked at once are sized to ``memory_budget_mb`` (default 512). Nothing here depends on the CPU's
instruction set: the plain float32 product is what every CPU (and GPU) runs well. (Until 2026-12 this
module used int8 products with cells of a 2-D projection: 4x faster than float32 on a CPU with AVX-512
VNNI, 45x slower on one without; this simpler search is faster on both; see the README's benchmark.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from imgcls.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_MEMORY_BUDGET_MB",
    "METRICS",
    "KNeighborsClassifier",
    "SearchStats",
    "as_labels",
    "as_matrix",
    "pixel_grid",
]

log = logging.getLogger(__name__)

METRICS = ("l2", "l1", "cosine")
WEIGHTS = ("uniform", "distance")
TIE_BREAKS = ("nearest", "label")
DEFAULT_MEMORY_BUDGET_MB = 512.0

RANK = 64  # principal directions of the bound (benchmarks/classic_vs_sklearn.py --ranks measures others)
_PIECES = 4  # L1: pieces per feature
_FIT_ROWS = 8192  # training samples the principal directions are estimated from
_CHUNK_ROWS = 1024  # queries per chunk when the budget allows
_U32 = 2.0**-24  # float32 unit roundoff


# --------------------------------------------------------------------------------------- input checking


def as_matrix(x: Any, what: str = "data") -> torch.Tensor:
    """``x`` (tensor or array, ``(N, D)`` or ``(N, C, H, W)``) as an ``(N, D)`` tensor; refuses NaN / inf."""
    t = torch.as_tensor(x)
    if t.dim() < 2:
        raise DataError(
            f"{what} must have one row per sample, (N, D) or (N, C, H, W); got shape {tuple(t.shape)}"
        )
    t = t.reshape(t.shape[0], -1)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    elif not (t.dtype.is_floating_point or t.dtype in _INT_DTYPES):
        raise DataError(f"{what} must be numbers, got dtype {t.dtype}")
    # one sum finds any NaN / inf (they propagate); only then look for the rows
    if t.dtype.is_floating_point and t.numel() and not torch.isfinite(t.sum()):
        bad = ~torch.isfinite(t).all(1)
        if bad.any():
            row = int(bad.nonzero()[0, 0])
            raise DataError(
                f"{what} holds NaN or infinite values ({int(bad.sum())} rows, the first is row {row}): "
                "drop or impute them before fitting"
            )
    return t


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def as_labels(y: Any, n: int, num_classes: int | None = None) -> tuple[torch.Tensor, int]:
    """``y`` as int64 ``(n,)`` labels in ``0..C-1`` and the class count ``C`` (``num_classes`` or max + 1)."""
    t = torch.as_tensor(y)
    if t.dim() != 1 or t.shape[0] != n:
        raise DataError(f"labels must be one per sample, shape ({n},); got {tuple(t.shape)}")
    if t.dtype.is_floating_point:
        if not bool((t == t.round()).all()):
            raise DataError("labels must be integer class indices 0..C-1")
    elif t.dtype not in _INT_DTYPES:
        raise DataError(f"labels must be integer class indices, got dtype {t.dtype}")
    t = t.to(torch.int64)
    if n and int(t.min()) < 0:
        raise DataError(f"labels must be class indices >= 0, got {int(t.min())}")
    top = int(t.max()) + 1 if n else 0
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise DataError(f"label {top - 1} is outside 0..{num_classes - 1} (num_classes={num_classes})")
    return t, num_classes


def pixel_grid(x: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """``(x as uint8, scale)`` when ``x`` holds 8-bit pixel values, else None.

    Pixels are uint8, integers in 0..255 (scale 1), or floats in ``[0, 1]`` within 1e-3 of the 1/255 grid
    (scale 255: ``uint8 / 255`` as ``ToTensor`` makes them, up to float rounding).
    """
    if x.dtype == torch.uint8:
        return x, 1.0
    if x.numel() == 0:
        return None
    lo, hi = float(x.min()), float(x.max())
    if x.dtype in _INT_DTYPES:
        return (x.to(torch.uint8), 1.0) if lo >= 0 and hi <= 255 else None
    if lo < 0 or hi > 1:
        return None
    out = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    for i in range(0, x.shape[0], 4096):  # chunks bound the float temporaries
        y = x[i : i + 4096].float() * 255  # float32 error here is ~2e-5, far below the 1e-3 accepted
        r = y.round()
        if float(y.sub_(r).abs_().max()) > 1e-3:
            return None
        out[i : i + 4096] = r.to(torch.uint8)
    return out, 255.0


# ------------------------------------------------------------------------------------------- the bound


@dataclass
class SearchStats:
    """What the last search did: which space, the bound's rank, how many exact distances per query."""

    kind: str = ""
    rank: int = 0  # principal directions of the bound (the embedding's width when it is not reduced)
    queries: int = 0
    exact_per_query: float = 0.0
    chunks: int = 0


class _Space:
    """The training set prepared for one metric: a lower bound of every distance from one matrix product.

    ``embed`` maps samples so that the squared L2 distance of two embeddings never exceeds their distance
    (module docstring). The embeddings, centred, are split into their coordinates ``p`` on ``rank``
    orthonormal principal directions and the norm ``r`` of what is left; as ``(p, r)`` of two samples are
    the coordinates of their embeddings in a rotated frame with the rest of each folded onto one axis,
    ``|p(a) - p(b)|^2 + (r(a) - r(b))^2`` is at most ``|e(a) - e(b)|^2``, hence at most the distance: a
    squared L2 distance of ``rank + 1`` coordinates, one matrix product for a chunk of queries.

    Internal distance units: L2 squared, L1 as is, cosine ``1 - cos``; pixels in 0..255 codes.
    """

    def __init__(self, x: torch.Tensor, metric: str, scale: float, rank: int) -> None:
        self.x, self.metric, self.scale = x, metric, scale
        self.pixels = x.dtype == torch.uint8 and metric != "cosine"
        n, d = x.shape
        if metric == "cosine":
            self.norm64 = _nonzero_norms(x, "training")
        if metric == "l1":  # the pieces span each feature's training range (constant features: width 0)
            self.lo = x.amin(0).double()
            self.width = (x.amax(0).double() - self.lo) / _PIECES
        width = d * _PIECES if metric == "l1" else d
        sub = x[torch.randperm(n, generator=torch.Generator().manual_seed(0))[:_FIT_ROWS]]
        e = self.embed(sub)
        self.mean = e.double().mean(0)
        self.rank = min(rank, width)
        self.v = _principal_directions((e.double() - self.mean).float(), self.rank)
        self.coords = torch.cat([self._coords(c) for c in x.split(4096)])  # (N, rank + 1)
        self.sq = self.coords.double().square().sum(1)
        self.radius = float(self.sq.max().sqrt())
        if self.pixels and metric == "l2":  # |code - 128|^2, exact in float32 up to D = 1024 (see exact())
            dt = torch.float32 if d <= 1024 else torch.float64
            self.sq_codes = torch.cat([(c.to(dt) - 128).square().sum(1) for c in x.split(4096)]).double()
        self.kind = f"{'pixels' if self.pixels else 'float'}-{metric}"

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(m, D)`` -> float32 embeddings whose squared L2 distances are lower bounds of the distances."""
        if self.metric == "l2":
            return x.float()
        if self.metric == "cosine":  # |a/|a| - b/|b||^2 / 2 = 1 - cos
            return (x.double() / (_nonzero_norms(x, "query") * math.sqrt(2))[:, None]).float()
        # L1: 4 pieces per feature, each piece in 0..w. |a - b| (a query clamped to the training range
        # only moves closer) = the sum of the pieces' |differences|, each <= w, so >= sum of diff^2 / w.
        w, root = self.width, self.width.clamp(min=1e-300).sqrt()
        z = torch.minimum(torch.maximum(x.double(), self.lo), self.lo + _PIECES * w) - self.lo
        parts = [torch.minimum((z - j * w).clamp_(min=0), w) / root for j in range(_PIECES)]
        return torch.cat(parts, 1).float()  # (m, 4 D)

    def _coords(self, x: torch.Tensor) -> torch.Tensor:
        """``(m, D)`` -> ``(m, rank + 1)``: principal coordinates and the norm of the rest."""
        e = (self.embed(x).double() - self.mean).float()
        p = e @ self.v
        rest = (e.double().square().sum(1) - p.double().square().sum(1)).clamp_(min=0).sqrt()
        return torch.cat([p, rest.float()[:, None]], 1)

    def bounds(self, q: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 bounds ``(m, N)`` (into ``out``) of a chunk of queries and each row's rounding margin ``(m,)``.

        ``|a|^2 + |b|^2 - 2 a.b`` in float32 is off by at most ``4 (rank + 9) u (|a| + max|b|)^2``
        (Higham, "Accuracy and Stability of Numerical Algorithms", 2002, section 3.1, with margin).
        """
        c = self._coords(q)
        sq = c.double().square().sum(1)
        b = torch.addmm(self.sq.float()[None, :], c, self.coords.T, alpha=-2, out=out).add_(
            sq.float()[:, None]
        )
        return b, 4 * (self.rank + 9) * _U32 * (sq.sqrt() + self.radius) ** 2

    def exact(self, a: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Exact distances (float64, internal units) of the samples ``cols`` to one query ``a`` ``(D,)``, or
        pair by pair to the rows of ``a`` ``(len(cols), D)``."""
        b = self.x.index_select(0, cols)
        if self.pixels:
            # 8-bit codes in float32: every partial sum is an integer below 2^24 (L2: of centred codes, up to
            # D = 1024; float64 beyond), so exact in any summation order: equal distances come out equal.
            if self.metric == "l1":
                return (b.float() - a.float()).abs_().sum(-1).double()
            dt = torch.float32 if b.shape[1] <= 1024 else torch.float64
            ac, bc = a.to(dt) - 128, b.to(dt) - 128
            dot = bc @ ac if a.dim() == 1 else (bc * ac).sum(1)
            return self.sq_codes[cols] + ac.double().square().sum(-1) - 2 * dot.double()
        a, b = a.double(), b.double()
        if self.metric == "l2":
            return (b - a).square_().sum(-1)
        if self.metric == "l1":
            return (b - a).abs_().sum(-1)
        cos = (b * a).sum(-1) / (a.norm(dim=-1) * self.norm64[cols])
        return (1 - cos).clamp_min_(0)

    def to_metric(self, d: torch.Tensor) -> torch.Tensor:
        return (d.sqrt() if self.metric == "l2" else d) / self.scale


def _nonzero_norms(x: torch.Tensor, what: str) -> torch.Tensor:
    norms = torch.cat([c.double().norm(dim=1) for c in x.split(4096)])
    if bool((norms == 0).any()):
        row = int((norms == 0).nonzero()[0, 0])
        raise DataError(
            f"cosine distance needs non-zero vectors; {what} row {row} is all zeros: use l2 or l1"
        )
    return norms


def _principal_directions(e: torch.Tensor, rank: int, iters: int = 4) -> torch.Tensor:
    """``rank`` orthonormal directions ``(D, rank)`` close to the top principal ones of the centred rows ``e``.

    Any orthonormal directions keep the bound a lower bound; the principal ones make it tight. Seeded
    subspace iteration (Halko, Martinsson and Tropp, SIAM Review 53(2), 2011, algorithm 4.4).
    """
    d = e.shape[1]
    if rank >= d:
        return torch.eye(d, device=e.device)
    v = torch.randn(d, rank, generator=torch.Generator().manual_seed(0)).to(e.device)
    for _ in range(iters):
        v = torch.linalg.qr(e.T @ (e @ v)).Q
    return torch.linalg.qr(v.double()).Q.float()  # orthonormal to float64 accuracy


# ------------------------------------------------------------------------------------------ the search


def _search(
    space: _Space, q: torch.Tensor, k: int, budget_bytes: int, stats: SearchStats
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of the rows of ``q``: internal distances (Q, k) float64 and indices (Q, k)."""
    n, n_q = space.x.shape[0], q.shape[0]
    row_bytes = n * 8  # a query's bounds (float32), their comparison (bool) and slack
    if row_bytes > budget_bytes:
        raise ConfigError(
            f"memory budget of {budget_bytes / 2**20:.2f} MB is too small for {n} training samples: "
            f"raise memory_budget_mb (--memory-budget-mb) to at least {row_bytes / 2**20:.2f}"
        )
    chunk = max(1, min(n_q, budget_bytes // row_bytes, _CHUNK_ROWS))
    out_d = torch.empty(n_q, k, dtype=torch.float64, device=q.device)
    out_i = torch.empty(n_q, k, dtype=torch.int64, device=q.device)
    # One buffer for every chunk's bounds and one for their comparison: allocating hundreds of MB afresh for
    # each chunk costs page faults (glibc maps allocations that large and unmaps them on free), as much as the
    # matrix product itself on the 2-core machines measured.
    bound = torch.empty(chunk, n, device=q.device)
    below = torch.empty(chunk, n, dtype=torch.bool, device=q.device)
    n_exact = 0
    for s in range(0, n_q, chunk):
        m = min(chunk, n_q - s)
        out_d[s : s + m], out_i[s : s + m], exact = _search_chunk(
            space, q[s : s + m], k, budget_bytes, bound[:m], below[:m]
        )
        n_exact += exact
        stats.chunks += 1
    stats.kind, stats.rank, stats.queries = space.kind, space.rank, n_q
    stats.exact_per_query = n_exact / max(1, n_q)
    return out_d, out_i


def _search_chunk(
    space: _Space, q: torch.Tensor, k: int, budget_bytes: int, bound: torch.Tensor, below: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One chunk of queries (module docstring): best distances and indices ``(m, k)``, exact distances taken."""
    n, m, dev = space.x.shape[0], q.shape[0], q.device
    bound, margin = space.bounds(q, out=bound)  # (m, N) float32, (m,) float64
    # U: the k-th smallest exact distance among the 2k smallest bounds, at least the true k-th distance
    s = min(n, 2 * k)
    seeds = bound.topk(s, dim=1, largest=False, sorted=False).indices.flatten()
    u = space.exact(q.repeat_interleave(s, dim=0), seeds).view(m, s).kthvalue(k, dim=1).values
    # Candidates: every sample whose bound is within U plus the rounding margin, which includes every sample
    # at distance <= U; checked one query at a time (few per query), in slices that fit the budget.
    t = (u + margin).float()
    t = torch.nextafter(t, torch.full_like(t, math.inf))  # round up: never lose a candidate
    rows, cols = torch.le(bound, t[:, None], out=below).nonzero(as_tuple=True)  # by row, then index
    per_row = torch.bincount(rows, minlength=m).tolist()
    best_d = torch.empty(m, k, dtype=torch.float64, device=dev)
    best_i = torch.empty(m, k, dtype=torch.int64, device=dev)
    step = max(1, budget_bytes // (16 * q.shape[1]))

    def finish(i: int, c: torch.Tensor) -> None:
        d = (
            space.exact(q[i], c)
            if c.numel() <= step
            else torch.cat([space.exact(q[i], s) for s in c.split(step)])
        )
        o = torch.sort(d, stable=True).indices[:k]  # equal distances: by index
        best_d[i], best_i[i] = d[o], c[o]

    _each(finish, list(enumerate(cols.split(per_row))))
    return best_d, best_i, m * s + cols.numel()


def _each(fn: Any, items: list[tuple[int, torch.Tensor]]) -> None:
    """``fn(*item)`` for every item. On a CPU with several threads: in a pool of Python threads (torch releases
    the GIL) with one intra-op thread each; a few small operations per item parallelise far better across
    items than within one (inside one, waking the OpenMP team costs more than the work)."""
    threads = torch.get_num_threads()
    if threads == 1 or not items or items[0][1].device.type != "cpu":
        for item in items:
            fn(*item)
        return
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda part: [fn(*item) for item in part], [items[w::threads] for w in range(threads)]
                )
            )
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ classifier


@dataclass
class KNeighborsClassifier:
    """k-nearest-neighbour classifier (module docstring: exactness, tie-breaks, memory).

    Args:
        k: neighbours that vote (``k=1``: the nearest-neighbour rule).
        metric: ``"l2"``, ``"l1"`` or ``"cosine"``.
        weights: ``"uniform"`` (one vote each) or ``"distance"`` (``1 / distance``).
        tie_break: ``"nearest"`` (the tied class with the closest member) or ``"label"`` (smallest label).
        memory_budget_mb: about the most the search allocates at once.
        device: where the search runs (``"cpu"``, ``"cuda"``, ...).
        rank: principal directions of the lower bound (speed only: results are exact for any rank).

    ``fit(x, y)`` takes ``(N, D)`` or ``(N, C, H, W)`` tensors or arrays; pixel data (:func:`pixel_grid`)
    is searched as 8-bit codes, with exact integer distances. Distances come back in the metric's own units
    (for data on the 1/255 grid: as if it were the floats given).
    """

    k: int = 5
    metric: str = "l2"
    weights: str = "uniform"
    tie_break: str = "nearest"
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB
    device: str | torch.device = "cpu"
    rank: int = RANK
    stats: SearchStats = field(default_factory=SearchStats, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_k(self.k)
        for name, value, valid in (
            ("metric", self.metric, METRICS),
            ("weights", self.weights, WEIGHTS),
            ("tie_break", self.tie_break, TIE_BREAKS),
        ):
            if value not in valid:
                raise ConfigError(f"unknown {name} '{value}': use one of {', '.join(valid)}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"rank must be a positive integer, got {self.rank!r}")
        if not self.memory_budget_mb > 0:
            raise ConfigError(f"memory_budget_mb must be positive, got {self.memory_budget_mb}")
        self.device = torch.device(self.device)
        self._x: torch.Tensor | None = None
        self._spaces: dict[str, _Space] = {}

    # ------------------------------------------------------------------------------------------- fitting
    def fit(self, x: Any, y: Any, num_classes: int | None = None) -> KNeighborsClassifier:
        """Store the training set (``num_classes`` defaults to the largest label + 1)."""
        x = as_matrix(x, "training data")
        if x.shape[0] == 0:
            raise DataError("the training set is empty")
        self.y, self.num_classes = as_labels(y, x.shape[0], num_classes)
        _check_k(self.k, x.shape[0])
        self._x = x.to(self.device)
        self.y = self.y.to(self.device)
        self._grid = pixel_grid(self._x) if self.metric != "cosine" else None
        self._spaces = {}
        return self

    @property
    def n_features(self) -> int:
        self._check_fitted()
        return self._x.shape[1]

    def _check_fitted(self) -> None:
        if self._x is None:
            raise ConfigError("this KNeighborsClassifier is not fitted: call fit(x, y) first")

    def _space_for(self, q: torch.Tensor) -> tuple[_Space, torch.Tensor]:
        """The prepared training set for these queries (pixel codes when both are 8-bit pixels), and them."""
        grid = self._grid
        if grid is not None:
            qg = pixel_grid(q)
            if qg is not None and qg[1] == grid[1]:
                return self._space("pixels", grid[0], grid[1]), qg[0]
        return self._space("float", self._x if self._x.is_floating_point() else self._x.float(), 1.0), q

    def _space(self, key: str, x: torch.Tensor, scale: float) -> _Space:
        if key not in self._spaces:
            self._spaces[key] = _Space(x, self.metric, scale, self.rank)
            log.debug("knn: %s space, bound of rank %d", self._spaces[key].kind, self._spaces[key].rank)
        return self._spaces[key]

    # ----------------------------------------------------------------------------------------- searching
    def kneighbors(self, x: Any, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances (float64, metric units) and training indices (int64), both ``(Q, k)``, nearest first."""
        self._check_fitted()
        k = self.k if k is None else k
        _check_k(k, self._x.shape[0])
        q = as_matrix(x, "query data").to(self.device)
        if q.shape[1] != self._x.shape[1]:
            raise DataError(
                f"queries have {q.shape[1]} features but the training data has {self._x.shape[1]}: "
                "prepare both the same way (same image size, same feature extractor)"
            )
        if q.shape[0] == 0:
            empty = torch.empty(0, k, device=self.device)
            return empty.double(), empty.long()
        space, q = self._space_for(q)
        self.stats = SearchStats()
        budget = int(self.memory_budget_mb * 2**20)
        d, idx = _search(space, q, k, budget, self.stats)
        log.debug(
            "knn %s (rank %d): %d queries, %.1f exact distances each, %d chunks",
            space.kind,
            space.rank,
            self.stats.queries,
            self.stats.exact_per_query,
            self.stats.chunks,
        )
        return space.to_metric(d), idx

    # -------------------------------------------------------------------------------------------- voting
    def vote(self, dist: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Vote totals ``(Q, C)`` float64 and the classes ranked best first ``(Q, C)`` for given neighbours."""
        n_q, k = idx.shape
        c = self.num_classes
        labels = self.y[idx]
        if self.weights == "uniform":
            w = torch.ones_like(dist)
        else:
            zero = dist == 0
            has_zero = zero.any(1, keepdim=True)
            w = torch.where(has_zero, zero.double(), 1.0 / dist)
        scores = torch.zeros(n_q, c, dtype=torch.float64, device=idx.device).scatter_add_(1, labels, w)
        classes = torch.arange(c, device=idx.device).expand(n_q, c)
        if self.tie_break == "nearest":
            # position of each class's nearest member; classes without votes: k + label (after all voters)
            first = (classes + k).scatter_reduce(
                1, labels, torch.arange(k, device=idx.device).expand(n_q, k), reduce="amin"
            )
        else:
            first = classes
        order = torch.argsort(first, dim=1, stable=True)
        order = order.gather(1, torch.argsort(-scores.gather(1, order), dim=1, stable=True))
        return scores, order

    def predict_topk(self, x: Any, topk: int = 5) -> torch.Tensor:
        """The ``topk`` best-voted classes per query ``(Q, topk)``, best first (first column = predict)."""
        self._check_fitted()
        if not 1 <= topk <= self.num_classes:
            raise ConfigError(f"topk must be in 1..{self.num_classes} (the class count), got {topk}")
        _, order = self.vote(*self.kneighbors(x))
        return order[:, :topk]

    def predict(self, x: Any) -> torch.Tensor:
        """Predicted class per query ``(Q,)`` int64."""
        return self.predict_topk(x, 1)[:, 0]

    def predict_proba(self, x: Any) -> torch.Tensor:
        """Vote shares ``(Q, C)`` float64 (rows sum to 1), as scikit-learn's ``predict_proba``."""
        self._check_fitted()
        scores, _ = self.vote(*self.kneighbors(x))
        return scores / scores.sum(1, keepdim=True)

    scores = predict_proba

    def score(self, x: Any, y: Any) -> float:
        """Top-1 accuracy on ``(x, y)``."""
        pred = self.predict(x)
        y_t, _ = as_labels(y, pred.shape[0])
        return float((pred.cpu() == y_t).double().mean()) if len(y_t) else math.nan


def _check_k(k: int, n: int | None = None) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if n is not None and k > n:
        raise ConfigError(f"k={k} is larger than the training set ({n} samples): lower k (--k)")


def topk_accuracy(topk_pred: torch.Tensor, y: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracies from ranked predictions ``(Q, K)``: ``{k: fraction with y among the first k}``."""
    hit = topk_pred == y.to(topk_pred.device)[:, None]
    return {k: float(hit[:, :k].any(1).double().mean()) for k in ks if k <= topk_pred.shape[1]}
