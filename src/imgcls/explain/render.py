"""Pictures of the explanations: heat maps over the images, and grids of filters, feature maps and
projections. Separate from the methods, which return tensors; matplotlib is imported here only, when a
picture is drawn.

Each figure is a ``matplotlib.figure.Figure`` not attached to pyplot; :func:`save_png` writes one atomically
and without a timestamp, so the same maps give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgcls.utils.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["heatmap_figure", "mosaic", "save_png", "tile_figure", "to_display"]


def to_display(x: np.ndarray, symmetric: bool = False) -> np.ndarray:
    """Scale an array to [0, 1] for display: min-max, or around 0 (0 -> 0.5) with ``symmetric``."""
    x = np.asarray(x, dtype=np.float64)
    if symmetric:
        m = float(np.abs(x).max()) if x.size else 0.0
        return 0.5 + 0.5 * x / m if m > 0 else np.full_like(x, 0.5)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _show_image(ax: object, img: np.ndarray) -> None:
    # img: (H, W, C) in [0, 1]; one channel is drawn in grey
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")  # type: ignore[attr-defined]
    else:
        ax.imshow(np.clip(img[..., :3], 0, 1), interpolation="nearest")  # type: ignore[attr-defined]
    ax.set_xticks([])  # type: ignore[attr-defined]
    ax.set_yticks([])  # type: ignore[attr-defined]


def heatmap_figure(
    images: np.ndarray,
    maps: np.ndarray,
    titles: Sequence[str],
    suptitle: str,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "jet",
    colorbar: str = "",
) -> Figure:
    """One row per image: the image, then the map over it (``maps`` (B, h, w), resized to the image with
    bilinear smoothing). ``images`` (B, H, W, C) in [0, 1]. Each map is scaled to its own range unless
    ``vmin``/``vmax`` fix it (then a colour bar labelled ``colorbar`` is drawn)."""
    from matplotlib.figure import Figure

    B, H, W = images.shape[:3]
    fig = Figure(figsize=(5.2, 2.5 * B + 0.5), layout="constrained")
    axes = fig.subplots(B, 2, squeeze=False)
    for b in range(B):
        _show_image(axes[b, 0], images[b])
        axes[b, 0].set_title(titles[b].split("\n")[0], fontsize=9)
        _show_image(axes[b, 1], images[b])
        m = maps[b]
        lo = vmin if vmin is not None else float(m.min())
        hi = vmax if vmax is not None else float(m.max())
        im = axes[b, 1].imshow(
            m,
            cmap=cmap,
            alpha=0.5,
            vmin=lo,
            vmax=hi if hi > lo else lo + 1,
            extent=(-0.5, W - 0.5, H - 0.5, -0.5),
            interpolation="bilinear",
        )
        axes[b, 1].set_title("\n".join(titles[b].split("\n")[1:]) or titles[b], fontsize=9)
        if vmin is not None and vmax is not None:
            fig.colorbar(im, ax=axes[b, 1], shrink=0.8, label=colorbar)
    fig.suptitle(suptitle, fontsize=10)
    return fig


def tile_figure(
    tiles: np.ndarray, titles: Sequence[str] | None, suptitle: str, *, columns: int | None = None
) -> Figure:
    """A grid of tiles (N, h, w) or (N, h, w, C), each already in [0, 1], titled ``titles`` when given."""
    from matplotlib.figure import Figure

    n = tiles.shape[0]
    cols = columns or min(n, max(1, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    if titles is None:  # one image of all tiles: a figure with one axis draws fast however many tiles
        fig = Figure(figsize=(max(4.5, cols * 0.6), max(2.0, rows * 0.6) + 0.6), layout="constrained")
        ax = fig.subplots()
        _show_image(ax, mosaic(tiles if tiles.ndim == 4 else tiles[..., None], cols))
        fig.suptitle(suptitle, fontsize=10)
        return fig
    size = 1.3 if titles is None else 1.8
    fig = Figure(figsize=(max(3.0, cols * size), rows * size + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        t = tiles[i]
        _show_image(ax, t if t.ndim == 3 else t[..., None])
        ax.set_axis_on()
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    return fig


def mosaic(tiles: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
    """Tiles (N, h, w, C) in [0, 1] laid out ``columns`` to a row, as one RGB image (H, W, 3) with ``gap``
    pixels of blue between them (a colour no grey tile has, so the tiles' edges stay visible)."""
    n, h, w, c = tiles.shape
    rows = math.ceil(n / columns)
    out = np.empty((rows * (h + gap) - gap, columns * (w + gap) - gap, 3))
    out[:] = (0.25, 0.45, 0.85)
    rgb = tiles if c == 3 else np.repeat(tiles[..., :1], 3, -1)
    for i in range(n):
        r, q = divmod(i, columns)
        out[r * (h + gap) : r * (h + gap) + h, q * (w + gap) : q * (w + gap) + w] = rgb[i]
    return out


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically, with no software or time stamp in it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    return path
