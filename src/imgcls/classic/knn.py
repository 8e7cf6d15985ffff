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

How the search is exact and fast (the brute force a k-NN needs is ``Q x N x D`` work; Fashion-MNIST has
10,000 x 60,000 x 784): a cheap *lower bound* of every distance comes from matrix products, the bounds pick
candidates, and only candidates get their exact distance.

1. Training samples are projected on the first two principal directions, ``p(x) = V x``, which never
   stretch a distance: for L2 ``|p(a) - p(b)| <= |a - b|`` (orthonormal directions); for L1 each signed
   direction alone gives ``|v.(a - b)| <= |a - b|_1``. Sorted into slabs of the first projection and cells of
   the second, about 1,024-2,048 samples a cell (a superblock), each with its bounding box in ``p``. Queries
   are processed in chunks of neighbouring ``p``.
2. For a chunk, the bounds against the cells its queries fall in are computed first. They are grouped in
   blocks of 16 samples; the samples with the smallest bounds in the ``2k`` most promising blocks get their
   exact distance, and the k-th smallest of those, ``U``, is at least the true k-th distance. Only cells
   whose box lies within ``window(U)`` of a query's ``p`` can hold a neighbour: those are added, each for
   the queries within reach of it, and ``U`` is taken again.

   For pixels under L2 (more than 128 of them, and more samples than one cell), a *screen* first drops,
   query by query, the cells that hold no sample within ``U`` of it, by a bound from a product of 65
   columns instead of 784. With ``P`` the first 64 principal directions (orthonormal) and ``mu`` a centre,
   ``z(x) = [P (x - mu), r(x)]`` with ``r(x) = |(I - P^T P)(x - mu)|`` never stretches a distance:
   ``|z(a) - z(b)|^2 = |P (a - b)|^2 + (r(a) - r(b))^2 <= |a - b|^2`` (Pythagoras, and the reverse triangle
   inequality on the rest), and
   ``|z(a) - z(b)|^2 = |z_a|^2 + |z_b|^2 - 2 z_a.z_b`` is again a matrix product (float32 ``z`` computed in
   float64, less the rounding margin of the float bounds below). The first two coordinates of ``z`` are
   the projections of step 1. On Fashion-MNIST (60,000 x 10,000) the screen drops 20% of the (query, cell)
   pairs and 14% of the products remain, against 40% without it. (Seeding ``U`` from the screen instead of
   from the first cells' products was tried: it needs the exact distances of the seeds, a gather of whole
   rows that cost more than the products it saved.)
3. Every sample whose bound is at most ``U`` is a candidate (all true neighbours are, since a bound never
   exceeds its distance); each gets its exact distance, and the ``k`` smallest (ties by index) are returned.
   ``U`` shrinks as candidates are checked.

The bounds, by data kind (see :func:`pixel_grid` for what counts as pixels):

- Pixels (uint8, integers in 0..255, or floats on the 1/255 grid as ``ToTensor`` makes them), CPU, L2: the
  bound *is* the squared distance, computed exactly as ``|a'|^2 + |b'|^2 - 2 a'.b'`` on ``a' = a - 128``:
  integer arithmetic, so no rounding and exact ties. The product is chosen by the machine
  (:func:`imgcls.utils.hardware.fast_int8`): int8 with int32 accumulation (``torch._int_mm``) where int8
  dot-product instructions exist and measure faster (about 4x a float32 product with AVX-512 VNNI), else a
  float32 product of the same codes, exact too because every term is at most 128^2 and every partial sum
  an integer below 2^24 (``torch._int_mm`` without VNNI ran 45x slower than float32 on AVX2).
  The candidates' distances then follow from their bounds, without reading a pixel.
- Pixels, CPU, L1: no matrix product gives an L1 distance, so the bound is one. Each value is split into 4
  pieces ``p_j(a) = clamp(a - 64 j, 0, 64)``; then ``|a - b| = sum_j |p_j(a) - p_j(b)|`` and, as
  ``|p_j(a) - p_j(b)| <= 64``, ``|a - b| >= sum_j (p_j(a) - p_j(b))^2 / 64``: a squared L2 distance of the
  pieces, again exact (in int8, or float32: terms at most 64^2). It is tight for far samples (large
  differences fill whole pieces), which leaves a few hundred candidates per query on Fashion-MNIST, checked
  exactly in integers.
- Anything else (features, other devices): float32 ``|a|^2 + |b|^2 - 2 a.b`` on centred (L2, L1) or
  unit-normalised (cosine) data, minus a rounding-error bound ``4 (D + 8) u (|a| + max|b|)^2``
  (``u = 2^-24``; Higham, "Accuracy and Stability of Numerical Algorithms", 2002, section 3.1, with margin),
  is a lower bound of the squared L2 distance; for L1 its square root is one too (``|x|_1 >= |x|_2``), but a
  weak one: L1 on float features is close to a brute force. Candidates are checked exactly in float64.

Chunks of at most 256 queries run in parallel on the CPU, one per thread (a chunk is many small operations
in sequence, which parallelise better across chunks than within one). Memory: the products of a chunk with
the training set are the one large temporary; chunks are sized so that those of all threads fit
``memory_budget_mb`` (default 512).
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

from imgcls.classic.inputs import INT_DTYPES, as_labels, as_matrix
from imgcls.errors import ConfigError, DataError
from imgcls.utils.hardware import fast_int8

__all__ = [
    "DEFAULT_MEMORY_BUDGET_MB",
    "METRICS",
    "KNeighborsClassifier",
    "SearchStats",
    "pixel_grid",
]

log = logging.getLogger(__name__)

METRICS = ("l2", "l1", "cosine")
WEIGHTS = ("uniform", "distance")
TIE_BREAKS = ("nearest", "label")
DEFAULT_MEMORY_BUDGET_MB = 512.0

_BLOCK = 16  # training samples per strided block of step 1
# About this many samples share one cell of the projections (one matrix product): 2,048 measured best with
# int8 products (AVX-512 VNNI), 1,024 with float32 ones (AVX2: 6.3 s against 7.8 s, Fashion-MNIST L2); with
# the L2 screen, 1,024 again on the float32 path (AVX-512 machine, --int8 off: 1.90 s; 512: 2.18 s; 2,048: 1.90 s).
_SUPERBLOCK = {"int8": 2048, "float32": 1024}
_CHUNK_ROWS = 256  # queries per chunk when the budget allows: fewer starve the matrix product
_SCREEN_DIMS = 64  # principal directions of the L2 screen (module docstring, step 2): 16-128 measured
_PIECE = 64  # width of an L1 piece: 4 pieces cover 0..255, and 0..64 fits int8
_INT32_MAX = 2**31 - 1
_U32 = 2.0**-24  # float32 unit roundoff


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
    if x.dtype in INT_DTYPES:
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


# ------------------------------------------------------------------------------------- distance spaces


class _Query:
    """A chunk of queries prepared for one space (whatever the space needs: codes, norms, originals)."""

    def __init__(self, **kw: torch.Tensor) -> None:
        self.__dict__.update(kw)


class _Space:
    """Training data prepared for one metric: lower bounds from matrix products, exact distances on pairs.

    The bound of query ``i`` and stored sample ``p`` is ``base[p] - prod[i, p]``, with ``prod`` the matrix
    product of :meth:`product`; ``exact <= u`` implies ``bound <= threshold(u)``. Distances inside a space
    are in internal units (L2: squared), converted by :meth:`to_metric`.

    Storage order, two levels:

    - *Superblocks*: cells of about 2,048 samples in the plane of the two projections ``p(x) = V x`` (slabs
      of the first, cells of the second), each with its bounding box. ``window(u)`` bounds how far in ``p``
      a sample at distance ``<= u`` can be (:meth:`box_gap` measures it), so a query needs only the cells
      whose box comes within ``window(U)``. The matrix product is taken one superblock at a time, and only
      for the queries that need it.
    - Within a superblock, samples are sorted by ``base`` and laid out in strided blocks of 16 (block ``j``
      at positions ``j, j + B, ..., j + 15 B`` of the superblock). A block's bound is then
      ``base_min[j] - max(prod over the block)``: a max over 16 contiguous rows of the product, and no pass
      that forms the bounds themselves.

    ``order[p]`` is the original index at position ``p`` (``n`` for padding, whose base is the largest value
    and whose product is 0).
    """

    kind = ""
    metric = ""
    n: int
    nb: int  # blocks
    sb_count: int  # superblocks
    sb_blocks: int  # blocks per superblock
    base: torch.Tensor
    base_min: torch.Tensor
    order: torch.Tensor
    proj_lo: torch.Tensor | None = None  # (superblocks, 2) smallest / largest projections in each
    proj_hi: torch.Tensor | None = None
    slab_edges: torch.Tensor | None = None  # first-projection values that separate the slabs
    proj_eps: float = 0.0
    superblock: int = 2048  # samples per cell (set by each space from _SUPERBLOCK)
    box_norm = 2.0  # how the two projection gaps combine into one bound: 2 (Euclidean) or inf (max)

    def _arrange(self, base: torch.Tensor, big: float, proj: torch.Tensor | None) -> torch.Tensor:
        """Lay out the samples as the class docstring says; sets the layout attributes; returns ``order``."""
        n = base.shape[0]
        s_count = max(1, -(-n // self.superblock)) if proj is not None else 1
        slabs = max(1, round(s_count**0.5))
        s_count = slabs * -(-s_count // slabs)  # a whole number of cells per slab
        b = -(-n // (_BLOCK * s_count))
        size = _BLOCK * b  # samples per superblock
        self.n, self.sb_count, self.sb_blocks, self.nb = n, s_count, b, s_count * b
        dev = base.device
        if proj is None:
            ranked = torch.arange(n, device=dev)
        else:  # slabs of the first projection, cells of the second within each slab
            by_first = torch.argsort(proj[:, 0], stable=True)
            slab_size = (s_count // slabs) * size
            slab_of = torch.arange(n, device=dev) // slab_size
            o = torch.argsort(proj[by_first, 1], stable=True)
            ranked = by_first[o[torch.argsort(slab_of[o], stable=True)]]
            self.slab_edges = proj[by_first[torch.arange(1, slabs, device=dev) * slab_size], 0]
        ranked = torch.cat([ranked, torch.full((s_count * size - n,), n, dtype=torch.int64, device=dev)])
        full = torch.cat([base, base.new_full((1,), big)])
        # by base within each superblock: stable sorts by base, then by superblock
        o = torch.argsort(full[ranked], stable=True)
        o = o[torch.argsort(o // size, stable=True)]
        # element 16 j + s of superblock k goes to position k size + s B + j
        self.order = ranked[o].view(s_count, b, _BLOCK).transpose(1, 2).reshape(-1)
        self.base = full[self.order]
        self.base_min = self.base.view(s_count, _BLOCK, b)[:, 0, :].reshape(-1)  # lane 0: smallest in block
        if proj is not None:
            cells = torch.cat([proj, proj.new_full((1, proj.shape[1]), math.nan)])[ranked].view(
                s_count, size, -1
            )
            self.proj_lo = torch.where(cells.isnan(), math.inf, cells).amin(1)  # (padding is NaN: ignored)
            self.proj_hi = torch.where(cells.isnan(), -math.inf, cells).amax(1)
            self.proj_eps = 1e-9 * (float(proj.abs().max()) + 1.0)  # float64 rounding of the projections
        return self.order

    def query_order(self, proj: torch.Tensor) -> torch.Tensor:
        """Queries by slab, then by the second projection: a chunk then covers few cells."""
        slab = torch.bucketize(proj[:, 0].contiguous(), self.slab_edges, right=True)
        o = torch.argsort(proj[:, 1], stable=True)
        return o[torch.argsort(slab[o], stable=True)]

    def box_gap(self, proj: torch.Tensor) -> torch.Tensor:
        """``(m, S)``: how far each query's projections lie outside each superblock's box (the bound)."""
        gap = (self.proj_lo[None] - proj[:, None]).clamp(min=0) + (proj[:, None] - self.proj_hi[None]).clamp(
            min=0
        )
        return gap.norm(p=self.box_norm, dim=2)

    def prepare(self, q: torch.Tensor) -> _Query:
        raise NotImplementedError

    def projection(self, q: torch.Tensor) -> torch.Tensor:
        """``p`` of each query row (float64)."""
        raise NotImplementedError

    @property
    def product_dtype(self) -> torch.dtype:
        """What :meth:`product` writes: ``base``'s type, or a float type holding the same exact integers."""
        return self.base.dtype

    def product(self, qp: _Query, sb: int, out: torch.Tensor, rows: torch.Tensor | None) -> None:
        """Write the product of the chunk (or its rows ``rows``) with superblock ``sb`` into ``out``."""
        raise NotImplementedError

    def threshold(self, qp: _Query, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def screen(self, qp: _Query, need: torch.Tensor, which: torch.Tensor, u: torch.Tensor) -> None:
        """Clear ``need[i, sb]`` (CPU bool, ``(m, S)``) for superblocks ``which`` that cannot hold a sample
        within ``u`` of query ``i``, by a bound cheaper than the product; here: none (no screen)."""

    def window(self, u: torch.Tensor) -> torch.Tensor:
        """Half-width in projection units within which every sample at distance <= ``u`` lies."""
        raise NotImplementedError

    def exact(self, qp: _Query, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Exact internal distances of query rows ``rows`` (chunk-local) and training samples ``cols``."""
        raise NotImplementedError

    def exact_from_bound(
        self, qp: _Query, rows: torch.Tensor, cols: torch.Tensor, bound: torch.Tensor
    ) -> torch.Tensor | None:
        """The exact distances from the (computed) bounds, where the bound determines them; else None."""
        return None

    def to_metric(self, d: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _PixelSpace(_Space):
    """uint8 pixels on the CPU: exact integer L2, or the integer piece bound for L1 (module docstring)."""

    def __init__(self, x: torch.Tensor, metric: str, scale: float) -> None:
        # int8 products (torch._int_mm) only where they measure faster than float32 ones: about 4x faster with
        # AVX-512 VNNI, 45x slower without it. Elsewhere the same codes go through a float32 product, exact
        # because every term and partial sum is an integer below 2^24 (float64 beyond 1,024 pixels).
        self.int8 = fast_int8()
        self.kind = f"{'int8' if self.int8 else 'pixels'}-{metric}"
        self.metric = metric
        self.scale = scale
        self.mult = 1 if metric == "l2" else _PIECE  # bound units per unit of distance
        norms = self._norms(x)
        self.parity = torch.cat([norms % 2, norms.new_zeros(1)])  # (index n: padding)
        self.x = _shift(x)  # (N, D) int8 a - 128, original order, for the exact distances
        self.superblock = _SUPERBLOCK["int8" if self.int8 else "float32"]
        cells = x.shape[0] > self.superblock
        # The L2 screen (module docstring, step 2): z(x) = [P (x - mu), |(I - P^T P)(x - mu)|] with P the
        # first principal directions, so |z(a) - z(b)| <= |a - b|; a product of 65 columns instead of 784.
        self.screen_z: torch.Tensor | None = None
        screen = metric == "l2" and cells and x.shape[1] > 2 * _SCREEN_DIMS
        if screen:
            mu, self.basis = _principal_basis(x, _SCREEN_DIMS)
            self.screen_cols = torch.cat([self.basis, mu[:, None], torch.ones_like(mu)[:, None]], 1)
            self.mu_proj, self.mu_sq = mu @ self.basis, float(mu.square().sum())
            z, zn, proj = self._screen_embed(x, norms)
            # the cells are those of z's first two coordinates: float64 projections on orthonormal
            # directions, |p(a) - p(b)| <= |a - b| (the margin covers float64 rounding)
            self.v_norm = 1 + 1e-9
        else:
            # Projection on int8 weights v, an int8 product (the shift by 128 moves every p alike): for L2 the
            # first principal direction scaled to +-127, |v.(a-b)| <= |v| |a-b|_2; for L1 its signs,
            # |v.(a-b)| <= |a-b|_1. Integers throughout: exact.
            v = _principal_directions(x)  # (D, 2)
            if metric == "l2":
                self.v = torch.round(v / v.abs().amax(0).clamp(min=1e-300) * 127).to(torch.int8)
                # |V.(a-b)|_2 <= sigma_max(V) |a-b|_2; the margin covers the float64 singular value
                self.v_norm = float(torch.linalg.matrix_norm(self.v.double(), ord=2)) * (1 + 1e-9)
            else:  # each |v_i.(a-b)| <= |a-b|_1: the larger of the two gaps is a bound
                self.v, self.v_norm, self.box_norm = torch.sign(v).to(torch.int8), 1.0, math.inf
            proj = self.projection(x) if cells else None
        # bound = h - a.b with h = floor(|b|^2 / 2): half the squared distance less the query's own |a|^2.
        order = self._arrange(torch.div(norms, 2, rounding_mode="floor"), _INT32_MAX, proj)
        self.base, self.base_min = self.base.to(torch.int32), self.base_min.to(torch.int32)
        at = order.clamp(max=self.n - 1)  # storage order (padding: any row)
        pad = order == self.n
        codes = self._encode(torch.index_select(x, 0, at), dim=1)  # (n_pad, K) int8; _int_mm takes its
        codes[pad.nonzero().view(-1)] = 0  # transpose as it is; padding: product 0, the bound the largest
        self.peak = 128 * 128 if metric == "l2" else _PIECE * _PIECE  # the largest term of a code product
        self.codes = codes if self.int8 else codes.to(_exact_float(codes.shape[1], self.peak))
        self.ones = torch.ones(x.shape[1], 1, dtype=torch.int8)
        self.sums = self._sums(self.x)
        if screen:
            self.screen_z = torch.index_select(z, 0, at).masked_fill_(pad[:, None], 0.0)  # (n_pad, d + 1)
            self.screen_base = torch.where(pad, math.inf, zn[at] / 2).float()  # |z|^2 / 2; padding: never
            self.screen_radius = float(zn.max().sqrt())

    def _mm(self, a: torch.Tensor, b: torch.Tensor, peak: int = 128 * 128) -> torch.Tensor:
        """``a @ b`` as exact int32 for int8 codes whose terms are at most ``peak``."""
        if self.int8:
            return torch._int_mm(a, b)
        dt = _exact_float(a.shape[1], peak)
        return torch.mm(a.to(dt), b.to(dt)).to(torch.int32)

    def _encode(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        if self.metric == "l2":  # a - 128 in int8; |a - b| is shift-invariant
            return _shift(x)
        # 4 pieces stacked along ``dim`` (planar: all pixels of piece 0, then piece 1, ...)
        xi = x.to(torch.int16)
        return torch.cat([(xi - _PIECE * j).clamp_(0, _PIECE).to(torch.int8) for j in range(4)], dim)

    def _norms(self, x: torch.Tensor) -> torch.Tensor:
        """Squared norms of the codes of uint8 rows ``x`` (int64), computed in float32: every term and partial
        sum is an integer below 2^24 (at most 784 x 128^2 for L2, 784 x 4 x 64^2 for L1), hence exact."""
        out = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
        for i in range(0, x.shape[0], 4096):
            v = x[i : i + 4096].float()
            if self.metric == "l2":
                f = v.sub_(128).square_()  # (a - 128)^2
            else:  # sum_j clamp(a - 64 j, 0, 64)^2 = 64^2 (a // 64) + (a % 64)^2
                q = torch.floor(v / _PIECE)
                f = v.sub_(q * _PIECE).square_().add_(q * _PIECE**2)
            out[i : i + 4096] = f.sum(1).long()
        return out

    def _screen_embed(
        self, x: torch.Tensor, norms: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z`` of uint8 rows (float32 ``(m, d + 1)``), ``|z|^2`` and the first two coordinates (float64), from
        one float64 product ``x [P, mu, 1]`` and the rows' exact ``norms`` ``|x - 128|^2`` (integers: no pass
        over ``x - mu``)."""
        d, dim = self.basis.shape[1], x.shape[1]
        zs, sq, first = [], [], []
        # 1,024 rows of 784 float64 stay in cache (twice the speed of 4,096); fewer rows of longer ones
        rows = max(1, min(1024, 2**20 // dim))
        for i in range(0, x.shape[0], rows):
            prod = x[i : i + rows].double() @ self.screen_cols  # (rows, d + 2): x.P, x.mu, sum(x)
            p = prod[:, :d] - self.mu_proj  # P (x - mu)
            # |x - mu|^2 = |x|^2 - 2 x.mu + |mu|^2, with |x|^2 = |x - 128|^2 + 256 sum(x) - 128^2 D
            c2 = norms[i : i + rows].double() + 256 * prod[:, d + 1] - 128**2 * dim
            c2 = c2 - 2 * prod[:, d] + self.mu_sq
            inside = p.square().sum(1)  # |P (x - mu)|^2
            rest = (c2 - inside).clamp_(min=0)  # |x - mu|^2 - |P (x - mu)|^2 (P orthonormal)
            zs.append(torch.cat([p, rest.sqrt()[:, None]], 1).float())
            sq.append(inside + rest)
            first.append(p[:, :2])
        return torch.cat(zs), torch.cat(sq), torch.cat(first)

    def prepare(self, q: torch.Tensor) -> _Query:
        qx = _shift(q)
        codes = self._encode(q, dim=1)
        codes = codes if self.int8 else codes.to(self.codes.dtype)
        qp = _Query(x=qx, codes=codes, norms=self._norms(q), sums=self._sums(qx))
        if self.screen_z is not None:
            qp.z, qp.zn, _ = self._screen_embed(q, qp.norms)
            # rounding of the float32 z and of their product (the float space's bound, module docstring)
            d = self.screen_z.shape[1]
            qp.zdelta = 4 * (d + 8) * _U32 * (qp.zn.sqrt() + self.screen_radius) ** 2
        return qp

    def screen(self, qp: _Query, need: torch.Tensor, which: torch.Tensor, u: torch.Tensor) -> None:
        # |z(a) - z(b)|^2 = |z_a|^2 + |z_b|^2 - 2 z_a.z_b <= |a - b|^2: a superblock where no sample has
        # |z_b|^2 / 2 - z_a.z_b <= (u + rounding - |z_a|^2) / 2 holds nothing within u
        if self.screen_z is None:
            return
        size = self.screen_z.shape[0] // self.sb_count
        limit = (u + qp.zdelta - qp.zn) / 2  # (m,) float64
        for sb in which.tolist():
            rows = need[:, sb].nonzero().view(-1)
            part = slice(sb * size, (sb + 1) * size)
            z = torch.index_select(qp.z, 0, rows)
            low = torch.addmm(self.screen_base[part], z, self.screen_z[part].T, alpha=-1).amin(1)
            need[rows[low.double() > limit[rows]], sb] = False

    def _sums(self, shifted: torch.Tensor) -> torch.Tensor | None:
        """Row sums of the pixels (L1 only), an int8 product with a column of ones: sum(a - 128) + 128 D."""
        if self.metric != "l1":
            return None
        return self._mm(shifted, self.ones, peak=128).view(-1).long() + 128 * shifted.shape[1]

    def projection(self, q: torch.Tensor) -> torch.Tensor:
        if self.screen_z is not None:  # z's first two coordinates
            return _chunked_matvec(q, self.basis[:, :2]) - self.mu_proj[:2]
        return self._mm(_shift(q), self.v).double()  # (m, 2), exact integers

    @property
    def product_dtype(self) -> torch.dtype:
        # int8 products: int32; float ones stay in their float type (exact integers below 2^24, or 2^53 in
        # float64), converted to int32 only where read (block maxima, candidates): no copy of every product
        return self.codes.dtype if not self.int8 else torch.int32

    def product(self, qp: _Query, sb: int, out: torch.Tensor, rows: torch.Tensor | None) -> None:
        size, a = out.shape[1], qp.codes if rows is None else torch.index_select(qp.codes, 0, rows)
        b = self.codes[sb * size : (sb + 1) * size].T
        if self.int8:
            torch._int_mm(a, b, out=out)  # int32, exact
        else:
            torch.mm(a, b, out=out)  # exact integers (module docstring)

    def window(self, u: torch.Tensor) -> torch.Tensor:
        return (u.sqrt() * self.v_norm if self.metric == "l2" else u) + 1e-6

    def threshold(self, qp: _Query, u: torch.Tensor) -> torch.Tensor:
        # L2: |a-b|^2 = |a|^2 + |b|^2 - 2 a.b >= |a|^2 + 2 (h - a.b) <= u  =>  h - a.b <= (u - |a|^2) / 2.
        # L1: 64 |a-b|_1 >= |a|^2 + |b|^2 - 2 a.b (pieces): the same with u -> 64 u.
        t = torch.floor((u * self.mult - qp.norms.double()) / 2)
        return t.clamp(-_INT32_MAX, _INT32_MAX - 1).to(torch.int32)

    def exact(self, qp: _Query, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        # index_select: twice the speed of x[rows] on rows of bytes
        a, b = torch.index_select(qp.x, 0, rows), torch.index_select(self.x, 0, cols)
        if self.metric == "l1":
            # |a - b| = (a + b) - 2 min(a, b): the row sums are known, min is one int8 pass, and its sum an
            # int8 product with a column of ones (a widening sum would first copy the bytes to int64);
            # the minimum of a - 128 and b - 128 is min(a, b) - 128
            low = self._mm(torch.minimum(a, b), self.ones, peak=128).view(-1).double() + 128 * a.shape[1]
            return (qp.sums[rows] + self.sums[cols]).double() - 2 * low
        d = a.to(torch.int32) - b.to(torch.int32)
        return d.square_().sum(1, dtype=torch.int64).double()

    def exact_from_bound(
        self, qp: _Query, rows: torch.Tensor, cols: torch.Tensor, bound: torch.Tensor
    ) -> torch.Tensor | None:
        # L2: bound = h - a.b exactly, so |a - b|^2 = |a|^2 + 2 bound + (|b|^2 mod 2): no pixels read
        if self.metric != "l2":
            return None
        return (qp.norms[rows] + 2 * bound.long() + self.parity[cols]).double()

    def to_metric(self, d: torch.Tensor) -> torch.Tensor:
        return (d.sqrt() if self.metric == "l2" else d) / self.scale


class _FloatSpace(_Space):
    """Any numbers, any device: float32 bounds with a rounding-error margin, float64 exact distances."""

    def __init__(self, x: torch.Tensor, metric: str) -> None:
        self.kind = f"float-{metric}"
        self.metric = metric
        self.x = x
        n, d = x.shape
        self.dim = d
        # Centring (L2, L1: translation-invariant) shrinks the norms, hence the rounding margin.
        self.mean = _chunked_mean(x) if metric != "cosine" else None
        self.norm64 = _chunked_norms(x) if metric == "cosine" else None
        if self.norm64 is not None and bool((self.norm64 == 0).any()):
            row = int((self.norm64 == 0).nonzero()[0, 0])
            raise DataError(
                f"cosine distance needs non-zero vectors; training row {row} is all zeros: use l2 or l1"
            )
        z = torch.zeros(n + 1, d, dtype=torch.float32, device=x.device)  # row n: padding
        for i in range(0, n, 4096):
            j = min(n, i + 4096)
            z[i:j] = self._embed(x[i:j], None if self.norm64 is None else self.norm64[i:j])
        zn = _chunked_norms(z[:n]).square()
        self.radius = float(zn.max().sqrt())
        # Projection (L2 and cosine: |v.(a-b)| <= |a-b|_2; L1: signs, <= |a-b|_1) of the data as given
        # (unit-normalised for cosine), in float64.
        v = _principal_directions(z[:n])  # (D, 2) orthonormal
        self.v = torch.sign(v) if metric == "l1" else v
        self.box_norm = math.inf if metric == "l1" else 2.0
        self.superblock = _SUPERBLOCK["float32"]
        proj = self._project(x, self.norm64) if n > self.superblock else None
        # bound = |b|^2 / 2 - a.b: half the squared chord less the query's own |a|^2 / 2
        order = self._arrange(zn / 2, math.inf, proj)
        self.base, self.base_min = self.base.float(), self.base_min.float()
        self.z = torch.index_select(z, 0, order)

    def _project(self, x: torch.Tensor, norms: torch.Tensor | None) -> torch.Tensor:
        p = _chunked_matvec(x, self.v)
        return p if norms is None else p / norms[:, None]

    def projection(self, q: torch.Tensor) -> torch.Tensor:
        return self._project(q, _chunked_norms(q) if self.metric == "cosine" else None)

    def _embed(self, x: torch.Tensor, norms: torch.Tensor | None) -> torch.Tensor:
        if self.mean is not None:
            return (x.double() - self.mean).float()
        return (x.double() / norms[:, None]).float()

    def prepare(self, q: torch.Tensor) -> _Query:
        norms = _chunked_norms(q) if self.metric == "cosine" else None
        if norms is not None and bool((norms == 0).any()):
            row = int((norms == 0).nonzero()[0, 0])
            raise DataError(
                f"cosine distance needs non-zero vectors; query row {row} is all zeros: use l2 or l1"
            )
        z = self._embed(q, norms)
        zn = z.double().square().sum(1)
        # Rounding-error bound of the float32 |a|^2 + |b|^2 - 2 a.b (module docstring).
        delta = 4 * (self.dim + 8) * _U32 * (zn.sqrt() + self.radius) ** 2
        return _Query(x=q, z=z, zn=zn, delta=delta, norm64=norms)

    def product(self, qp: _Query, sb: int, out: torch.Tensor, rows: torch.Tensor | None) -> None:
        size, a = out.shape[1], qp.z if rows is None else torch.index_select(qp.z, 0, rows)
        torch.mm(a, self.z[sb * size : (sb + 1) * size].T, out=out)

    def window(self, u: torch.Tensor) -> torch.Tensor:
        # l2: |a-b|_2 = sqrt(u); l1: |a-b|_2 <= |a-b|_1 = u; cosine: chord of unit vectors sqrt(2 u)
        # (|V.(a-b)|_2 <= |a-b|_2 for orthonormal rows; for L1 each sign row alone, box_norm = inf)
        w = {"l2": u.sqrt(), "l1": u, "cosine": (2 * u).sqrt()}[self.metric]
        return w * (1 + 1e-6) + 2 * self.proj_eps  # float64 data: the distances themselves have rounding

    def threshold(self, qp: _Query, u: torch.Tensor) -> torch.Tensor:
        # squared chord of the embedding, per metric: l2 d^2 = u; l1: |x|_2^2 <= |x|_1^2; cosine: 2 (1 - cos)
        sq = {"l2": u, "l1": u * u, "cosine": 2 * u}[self.metric]
        t = ((sq + qp.delta - qp.zn) / 2).float()
        return torch.nextafter(t, torch.full_like(t, math.inf))  # round up: never lose a candidate

    def exact(self, qp: _Query, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        a = torch.index_select(qp.x, 0, rows).double()
        b = torch.index_select(self.x, 0, cols).double()
        if self.metric == "l2":
            return (a - b).square_().sum(1)
        if self.metric == "l1":
            return (a - b).abs_().sum(1)
        cos = (a * b).sum(1) / (qp.norm64[rows] * self.norm64[cols])
        return (1 - cos).clamp_min_(0)

    def to_metric(self, d: torch.Tensor) -> torch.Tensor:
        return d.sqrt() if self.metric == "l2" else d


def _exact_float(k: int, peak: int) -> torch.dtype:
    """A float type in which a product of ``k``-long integer rows is exact when no term exceeds ``peak`` in
    size: float32 while ``k * peak`` (a bound of every partial sum) stays within 2^24, else float64."""
    return torch.float32 if k * peak <= 2**24 else torch.float64


def _shift(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``a`` -> int8 ``a - 128`` (flip the top bit): the order and all differences stay."""
    return (x ^ 0x80).view(torch.int8)


def _chunked_matvec(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``x @ v`` in float64, in chunks of rows (``v`` a vector or a matrix)."""
    return torch.cat([x[i : i + 4096].double() @ v for i in range(0, x.shape[0], 4096)])


def _principal_directions(x: torch.Tensor, iters: int = 25) -> torch.Tensor:
    """The first two principal directions ``(D, 2)`` (float64, orthonormal) of up to 2048 evenly spaced rows,
    by power iteration (the second kept orthogonal to the first).

    Any directions give valid bounds; principal ones spread the data most, so windows hold the fewest
    samples (float32 and a rough convergence suffice for that). Deterministic: each iteration starts from a
    fixed vector.
    """
    step = max(1, x.shape[0] // 2048)
    s = x[::step][:2048].float()
    s = s - s.mean(0)
    d = s.shape[1]
    out = torch.zeros(d, 2, dtype=torch.float64, device=x.device)
    starts = (torch.ones(d), torch.arange(d, dtype=torch.float32) % 2 * 2 - 1)
    for i, v in enumerate(starts):
        v = v.to(x.device)
        for _ in range(iters):
            w = s.T @ (s @ v)
            if i:
                w -= (w @ out[:, 0].float()) * out[:, 0].float()
            norm = w.norm()
            if not norm > 0:
                break
            v = w / norm
        v = v.double()
        if i:  # exactly orthogonal in float64
            v = v - (v @ out[:, 0]) * out[:, 0]
        out[:, i] = v / v.norm() if v.norm() > 0 else v
    return out


def _principal_basis(x: torch.Tensor, d: int, iters: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """A centre ``(D,)`` and ``d`` leading principal directions ``(D, d)`` of up to 2,048 evenly spaced rows
    (their mean; randomized subspace iteration, ``d + 16`` directions ``iters`` times, then ordered by
    variance), float64, orthonormal to float64 precision (a float64 QR at the end). Any centre and any
    orthonormal directions give valid bounds; principal ones leave the least outside them. The cost grows
    with ``D``, not ``D^2`` (a 12,288-pixel image's covariance would take 600 MB and an ``eigh`` of minutes).
    Deterministic: its own seeded generator, the global one untouched."""
    step = max(1, x.shape[0] // 2048)
    s = x[::step][:2048].double()
    mu = s.mean(0)
    s = (s - mu).float()
    gen = torch.Generator(device=x.device).manual_seed(0)
    v = torch.randn(s.shape[1], min(d + 16, s.shape[1]), generator=gen, device=x.device)
    for _ in range(iters):
        v = torch.linalg.qr(s.T @ (s @ v)).Q
    _, _, vh = torch.linalg.svd(s @ v, full_matrices=False)  # the subspace's directions by variance
    q, r = torch.linalg.qr((v @ vh.T[:, :d]).double())
    return mu, q * torch.sign(torch.diagonal(r))  # QR's signs undone


def _chunked_mean(x: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for i in range(0, x.shape[0], 4096):
        total += x[i : i + 4096].double().sum(0)
    return total / max(1, x.shape[0])


def _chunked_norms(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x[i : i + 4096].double().norm(dim=1) for i in range(0, x.shape[0], 4096)])


# ------------------------------------------------------------------------------------------ the search


@dataclass
class SearchStats:
    """What the last search did: which space, how many exact distances (seeds + candidates) per query."""

    kind: str = ""
    queries: int = 0
    exact_per_query: float = 0.0
    product_share: float = 1.0  # share of the query x training products computed (the rest: outside windows)
    screened_share: float = 0.0  # share of the (query, cell) pairs that a window kept and the screen dropped
    chunks: int = 0


def _merge(
    best_d: torch.Tensor, best_i: torch.Tensor, rows: torch.Tensor, d: torch.Tensor, idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest per row of the current best and the new (row, distance, index) triples, by (d, index)."""
    m, k = best_d.shape
    dev = best_d.device
    all_r = torch.cat([rows, torch.arange(m, device=dev).repeat_interleave(k)])
    all_d = torch.cat([d, best_d.flatten()])
    all_i = torch.cat([idx, best_i.flatten()])
    # lexicographic (row, distance, index): stable sorts from the last key to the first
    o = torch.argsort(all_i, stable=True)
    o = o[torch.argsort(all_d[o], stable=True)]
    o = o[torch.argsort(all_r[o], stable=True)]
    counts = torch.bincount(all_r, minlength=m)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(o.numel(), device=dev) - starts[all_r[o]]
    sel = o[pos < k]
    return all_d[sel].view(m, k), all_i[sel].view(m, k)


def _search(
    space: _Space, q: torch.Tensor, k: int, budget_bytes: int, stats: SearchStats
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of the rows of ``q``: internal distances (Q, k) float64 and indices (Q, k)."""
    dev = q.device
    n_q = q.shape[0]
    row_bytes = space.nb * _BLOCK * 4 * 2  # the products and one temporary of their size
    if row_bytes > budget_bytes:
        raise ConfigError(
            f"memory budget of {budget_bytes / 2**20:.2f} MB is too small for {space.n} training samples: "
            f"raise memory_budget_mb (--memory-budget-mb) to at least {row_bytes / 2**20:.2f}"
        )
    # Chunks are many small operations one after another, which one thread each runs best: on the CPU they
    # go to a pool of Python threads (torch releases the GIL), one intra-op thread each, memory permitting.
    threads = torch.get_num_threads()
    workers = threads if dev.type == "cpu" and threads > 1 and budget_bytes >= 2 * row_bytes else 1
    chunk = max(1, min(n_q, budget_bytes // (row_bytes * workers), _CHUNK_ROWS))
    # the exact distances of a slice of pairs gather two rows of D float64 each
    pair_slice = max(1024, budget_bytes // (16 * max(1, q.shape[1]) + 64))
    windowed = space.proj_lo is not None and space.sb_count > 1
    # Queries in projection order: a chunk's windows then overlap (results go back to the given order).
    q_proj = space.projection(q) if windowed else None
    q_order = space.query_order(q_proj) if windowed else torch.arange(n_q, device=dev)
    out_d = torch.empty(n_q, k, dtype=torch.float64, device=dev)
    out_i = torch.empty(n_q, k, dtype=torch.int64, device=dev)

    def run(s: int) -> tuple[int, int, int]:
        idx = q_order[s : s + chunk]
        proj = q_proj[idx] if q_proj is not None else None
        best_d, best_i, *counts = _search_chunk(space, space.prepare(q[idx]), proj, k, pair_slice)
        out_d[idx], out_i[idx] = best_d, best_i  # disjoint rows per chunk
        return tuple(counts)

    starts = range(0, n_q, chunk)
    if workers > 1 and len(starts) > 1:
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                counts = list(pool.map(run, starts))
        finally:
            torch.set_num_threads(threads)
    else:
        counts = [run(s) for s in starts]
    n_exact = sum(c[0] for c in counts)
    n_products = sum(c[1] for c in counts)
    n_screened = sum(c[2] for c in counts)
    stats.chunks += len(counts)
    stats.kind, stats.queries = space.kind, n_q
    stats.exact_per_query = n_exact / max(1, n_q)
    stats.product_share = n_products / max(1, n_q * space.sb_count)
    stats.screened_share = n_screened / max(1, n_q * space.sb_count)
    return out_d, out_i


def _search_chunk(
    space: _Space, qp: _Query, proj: torch.Tensor | None, k: int, pair_slice: int
) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
    """One chunk of queries (module docstring, steps 2 and 3), with their projections (None: no windows):
    best distances and indices ``(m, k)``, the numbers of exact distances and of (query, superblock)
    products computed, and of (query, superblock) pairs the screen dropped."""
    n, nb, g = space.n, space.nb, _BLOCK
    n_sb, b = space.sb_count, space.sb_blocks
    size = g * b  # positions per superblock
    base, order = space.base, space.order
    base_min = space.base_min.view(n_sb, b)
    dev, m = base.device, qp.x.shape[0]
    m0 = min(nb, 2 * k)
    n_seeds = min(2 * k, m0 * g)
    lanes = torch.arange(g, device=dev) * b  # block j of a superblock: positions j, j + B, ..., j + 15 B
    ar = torch.arange(m, device=dev)
    big = math.inf if base.dtype.is_floating_point else _INT32_MAX
    # Products, one part per (superblock, rows) computed, packed in one buffer: part of superblock sb at
    # offset[sb], its row r at rowmap[sb, r] (-1: not computed).
    flat = torch.empty(m * n_sb * size, dtype=space.product_dtype, device=dev)
    offset = torch.zeros(n_sb, dtype=torch.int64, device=dev)
    rowmap = torch.full((n_sb, m), -1, dtype=torch.int64, device=dev)
    lb = torch.full((m, n_sb, b), big, dtype=base.dtype, device=dev)  # block bounds; big: not computed
    cursor = 0

    def compute(which: torch.Tensor, need: torch.Tensor | None = None) -> None:
        """Products of superblocks ``which`` with the chunk, or with the rows ``need[:, sb]`` marks."""
        nonlocal cursor
        for sb in which.tolist():
            rows = ar if need is None else need[:, sb].nonzero().view(-1).to(dev)
            part = flat[cursor : cursor + rows.numel() * size].view(-1, size)
            space.product(qp, sb, part, None if need is None else rows)
            offset[sb], cursor = cursor, cursor + part.numel()
            rowmap[sb, rows] = torch.arange(rows.numel(), device=dev)
            top = part.view(-1, g, b).amax(1).to(base.dtype)  # exact integers (float products too)
            lb[rows, sb] = base_min[sb] - top  # no bound in a block is lower

    def bound_at(rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        # (a product not computed reads some other value: only ever for seeds, which any sample can be)
        sb, within = pos // size, pos % size
        return base[pos] - flat[offset[sb] + rowmap[sb, rows].clamp(min=0) * size + within].to(base.dtype)

    def positions(blocks: torch.Tensor) -> torch.Tensor:  # (...,) blocks -> (..., 16) positions
        return ((blocks // b) * size + blocks % b)[..., None] + lanes

    def seed_bound() -> torch.Tensor:
        # the 2k smallest bounds in the 2k most promising blocks; their k-th exact distance is >= the k-th
        # nearest (padding has the largest bound; blocks not computed come last and hold real samples)
        blocks = torch.topk(lb.view(m, nb), m0, dim=1, largest=False).indices
        members = positions(blocks).view(m, -1)
        vals = bound_at(ar[:, None], members)
        pick = torch.topk(vals, n_seeds, dim=1, largest=False).indices
        pos = members.gather(1, pick).view(-1)
        rows, seeds = ar.repeat_interleave(n_seeds), order[pos]
        computed = rowmap[pos // size, rows] >= 0
        d = space.exact_from_bound(qp, rows, seeds, vals.gather(1, pick).view(-1))
        if d is None or not bool(computed.all()):
            d_exact = space.exact(qp, rows, seeds.clamp(max=n - 1))
            d = d_exact if d is None else torch.where(computed, d, d_exact)
        return torch.where(seeds < n, d, math.inf).view(m, n_seeds).kthvalue(k, dim=1).values

    # the superblocks around the chunk's projections, U from them
    if proj is not None:  # the cells the chunk's own projections fall in (or come nearest to)
        gap = space.box_gap(proj)
        near = (gap == gap.amin(1, keepdim=True)).any(0).cpu()
        compute(near.nonzero().view(-1))
    else:
        compute(torch.arange(n_sb))
    u = seed_bound()
    n_screened = 0
    # every superblock whose box is within a query's window (gap <= window(U)), for those queries; U again
    if proj is not None:
        need = (space.box_gap(proj) <= space.window(u)[:, None]).cpu()  # (m, S)
        new = need.any(0) & (rowmap[:, 0] < 0).cpu()  # superblocks not computed yet (phase 1: all rows)
        if new.any():  # the cheap screen rules out more of them, query by query
            before = int(need[:, new].sum())
            space.screen(qp, need, new.nonzero().view(-1), u)
            n_screened = before - int(need[:, new].sum())
            new &= need.any(0)
        if new.any():
            compute(new.nonzero().view(-1), need)
            u = torch.minimum(u, seed_bound())
    t = space.threshold(qp, u)
    # candidates: members of blocks whose bound passes, whose own bound passes
    rows, blk = (lb.view(m, nb) <= t[:, None]).nonzero(as_tuple=True)
    members = positions(blk)  # (P_blocks, g)
    vals = bound_at(rows[:, None], members)
    keep = vals <= t[rows, None]
    rows = rows[:, None].expand_as(members)[keep]
    cols, vals = order[members[keep]], vals[keep]
    best_d = torch.full((m, k), math.inf, dtype=torch.float64, device=dev)
    best_i = torch.full((m, k), n, dtype=torch.int64, device=dev)
    n_exact = m * n_seeds
    for p in range(0, rows.numel(), pair_slice):
        r, c, v = rows[p : p + pair_slice], cols[p : p + pair_slice], vals[p : p + pair_slice]
        if p:  # U has shrunk: drop what no longer passes
            ok = v <= t[r]
            r, c, v = r[ok], c[ok], v[ok]
        d = space.exact_from_bound(qp, r, c, v)
        d = space.exact(qp, r, c) if d is None else d
        n_exact += r.numel()
        best_d, best_i = _merge(best_d, best_i, r, d, c)
        t = space.threshold(qp, torch.minimum(u, best_d[:, k - 1]))
    return best_d, best_i, n_exact, int((rowmap >= 0).sum()), n_screened


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

    ``fit(x, y)`` takes ``(N, D)`` or ``(N, C, H, W)`` tensors or arrays; pixel data (:func:`pixel_grid`)
    takes the exact integer path on the CPU. Distances come back in the metric's own units (for data on the
    1/255 grid: as if it were the floats given).
    """

    k: int = 5
    metric: str = "l2"
    weights: str = "uniform"
    tie_break: str = "nearest"
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB
    device: str | torch.device = "cpu"
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
        grid = self._grid
        if grid is not None and self.device.type == "cpu" and q.shape[1] <= 65535:
            qg = pixel_grid(q)
            if qg is not None and qg[1] == grid[1]:
                if "pixels" not in self._spaces:
                    self._spaces["pixels"] = _PixelSpace(grid[0], self.metric, grid[1])
                return self._spaces["pixels"], qg[0]
        if "float" not in self._spaces:
            self._spaces["float"] = _FloatSpace(self._x, self.metric)
        return self._spaces["float"], q

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
            "knn %s: %d queries, %.1f exact distances each, %d chunks",
            space.kind,
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
