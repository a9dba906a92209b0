"""Plots of images and patches for the notebooks and widgets, and the drawing helpers the other figure modules share.

Every function returns a `matplotlib.figure.Figure` built without pyplot: nothing is shown or kept in
global state. In Jupyter, make the figure the last expression of a cell to display it; elsewhere call
`fig.savefig(path)`. The other figures, by topic:

    viz_embeddings.py  positional embedding tables and their similarity maps (§3.2)
    viz_diagrams.py    DiT drawn: the whole network, and the four block designs of Fig. 3 (§3.2)
    viz_compute.py     Gflops and parameters: against the patch size, per component, per block design (§4, Table 4)
    viz_training.py    the diffusion process and training: schedules, noising, trajectories, losses
"""
import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..model import patchify


def _figure(nrows: int = 1, ncols: int = 1, cell: tuple[float, float] = (3.0, 3.0), **kw):
    """A pyplot-free Figure and its axes as a flat list."""
    fig = Figure(figsize=(cell[0] * ncols, cell[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, list(axes.flat)


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def _hwc01(image) -> np.ndarray:
    """One (C, H, W) image in [-1, 1] -> (H, W) or (H, W, 3) in [0, 1] for imshow."""
    a = _numpy(image)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (C, H, W) with C = 1 or 3, got {tuple(a.shape)}")
    a = np.clip((a + 1) / 2, 0, 1)
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def _imshow(ax, image, **kw):
    a = _hwc01(image)
    ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest", **kw)


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------- images and patches (paper §3.2, Fig. 4)

def show_images(images, nrow: int = 8, titles: Sequence[str] | None = None, size: float = 1.6) -> Figure:
    """(N, C, H, W) images in [-1, 1] (C = 1 or 3) in a grid with `nrow` images per row; one axes per image."""
    a = _numpy(images)
    if a.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(a.shape)}")
    if not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}")
    n = len(a)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image ({n}), got {len(titles)}")
    cols = min(nrow, max(n, 1))
    fig, axes = _figure(math.ceil(n / cols) or 1, cols, (size, size + (0.25 if titles else 0)))
    for i, ax in enumerate(axes):
        if i >= n:
            ax.remove()
            continue
        _imshow(ax, a[i])
        _off(ax)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    return fig


def _grid_lines(ax, h: int, w: int, p: int, color: str):
    for k in range(0, w + 1, p):
        ax.axvline(k - 0.5, color=color, lw=0.8)
    for k in range(0, h + 1, p):
        ax.axhline(k - 0.5, color=color, lw=0.8)


def patch_grid(image, patch_sizes: int | Sequence[int] = (2, 4, 8), numbers: bool = False,
               color: str = "tab:orange", size: float = 3.0) -> Figure:
    """One (C, H, W) image in [-1, 1] with its p×p patch grid drawn over it, one axes per patch size.

    Titles give the token count T = (H/p)(W/p); `numbers=True` writes each token's index (row-major)."""
    ps = [patch_sizes] if isinstance(patch_sizes, int) else list(patch_sizes)
    h, w = _numpy(image).shape[-2:]
    for p in ps:
        if not isinstance(p, int) or p < 1 or h % p or w % p:
            raise ValueError(f"patch_sizes must be positive ints dividing the image size {h}x{w}, got {p!r}")
    fig, axes = _figure(1, len(ps), (size, size + 0.3))
    for ax, p in zip(axes, ps):
        _imshow(ax, image)
        _grid_lines(ax, h, w, p, color)
        gh, gw = h // p, w // p
        if numbers:
            for i in range(gh * gw):
                r, c = divmod(i, gw)
                ax.text(c * p + (p - 1) / 2, r * p + (p - 1) / 2, str(i), color=color, ha="center", va="center",
                        fontsize=max(4, min(9, 200 / max(gh, gw) / 3)))
        ax.set_title(f"p = {p}: {gh}×{gw} = {gh * gw} tokens", fontsize=10)
        _off(ax)
    return fig


def patch_tokens(image, patch_size: int, color: str = "tab:orange") -> Figure:
    """Left: one (C, H, W) image with numbered p×p patches. Right: the (T, p·p·C) token matrix that
    `ditlab.model` makes of it, one row per patch, in the same order."""
    x = torch.as_tensor(_numpy(image))
    if x.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W), got {tuple(x.shape)}")
    tokens = patchify(x[None], patch_size)[0].numpy()  # (T, p*p*C)
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax_img, ax_tok = fig.subplots(1, 2, width_ratios=[1, 1])
    h, w = x.shape[-2:]
    _imshow(ax_img, x)
    _grid_lines(ax_img, h, w, patch_size, color)
    gw = w // patch_size
    T = tokens.shape[0]
    for i in range(T):
        r, c = divmod(i, gw)
        ax_img.text(c * patch_size + (patch_size - 1) / 2, r * patch_size + (patch_size - 1) / 2, str(i),
                    color=color, ha="center", va="center", fontsize=7 if T <= 64 else 4)
    ax_img.set_title(f"image {h}×{w}, p = {patch_size}")
    _off(ax_img)
    ax_tok.imshow((tokens + 1) / 2, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax_tok.set_title(f"tokens: T = {T} rows × p·p·C = {tokens.shape[1]}")
    ax_tok.set_xlabel("value inside the patch (p, p, C order)")
    ax_tok.set_ylabel("token index")
    return fig


# ---------------------------------------------------------------- image tables (rows of images with labels)

def _image_table(rows, row_labels=None, col_labels=None, size: float = 1.3, title: str | None = None) -> Figure:
    """rows: list of (K, C, H, W) image batches, one axes row each; labels on the left / on top."""
    nr, nc = len(rows), max(len(r) for r in rows)
    fig, axes = _figure(nr, nc, (size, size))
    for i, imgs in enumerate(rows):
        for j in range(nc):
            ax = axes[i * nc + j]
            if j < len(imgs):
                _imshow(ax, imgs[j])
            else:
                ax.set_axis_off()
            _off(ax)
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(str(col_labels[j]), fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[i]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def image_rows(rows, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
               size: float = 1.3, title: str | None = None) -> Figure:
    """A table of images: `rows` is a list (or (R, K, C, H, W) tensor) of (K, C, H, W) batches in [-1, 1],
    one row each, e.g. the same labels sampled at several guidance scales. Labels go left and on top."""
    rows = [_numpy(r) for r in rows]
    if not rows or any(r.ndim != 4 for r in rows):
        raise ValueError("rows must be a non-empty list of (K, C, H, W) image batches")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"row_labels must have one entry per row ({len(rows)}), got {len(row_labels)}")
    return _image_table(rows, row_labels, col_labels, size, title)
