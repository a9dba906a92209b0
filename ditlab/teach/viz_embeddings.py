"""Plots of embedding tables (paper §3.2): a table as a heatmap, and how similar each token's 2D sin-cos position is
to every other token's, drawn on the token grid. Figures are built without pyplot, like all of `ditlab.teach.viz`."""
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .viz import _figure, _numpy, _off


def embedding_heatmap(table, xlabel: str = "channel", ylabel: str = "position", title: str | None = None,
                      row_labels: Sequence[str] | None = None, cmap: str = "RdBu_r") -> Figure:
    """An (M, D) embedding table as a heatmap (rows = positions/timesteps/classes), with a colorbar."""
    a = _numpy(table)
    if a.ndim != 2:
        raise ValueError(f"table must have shape (M, D), got {tuple(a.shape)}")
    fig, (ax,) = _figure(1, 1, (6.0, 3.6))
    lim = float(np.abs(a).max()) or 1.0
    im = ax.imshow(a, aspect="auto", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if row_labels is not None:
        if len(row_labels) != len(a):
            raise ValueError(f"row_labels must have one entry per row ({len(a)}), got {len(row_labels)}")
        ax.set_yticks(range(len(a)), [str(r) for r in row_labels])
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax)
    return fig


def cosine_similarity_matrix(table) -> np.ndarray:
    """(M, D) -> (M, M) cosine similarity between rows."""
    a = _numpy(table).astype(np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    return a @ a.T


def similarity_heatmaps(pos_embed, grid: int | tuple[int, int], tokens: Sequence, title: str | None = None,
                        size: float = 2.4) -> Figure:
    """Cosine similarity of each chosen token's positional embedding to every token, drawn on the token grid.

    pos_embed: (T, D) or (1, T, D) in row-major grid order; grid: gh×gw with gh·gw = T; tokens: indices
    or (row, col) pairs. One axes per token (the chosen token is marked), one shared colour scale up to 1."""
    a = _numpy(pos_embed)
    a = a[0] if a.ndim == 3 else a
    gh, gw = (grid, grid) if isinstance(grid, int) else tuple(grid)
    if a.ndim != 2 or a.shape[0] != gh * gw:
        raise ValueError(f"pos_embed must have shape (T, D) with T = {gh}*{gw} = {gh * gw}, got {tuple(a.shape)}")
    idx = [t[0] * gw + t[1] if isinstance(t, (tuple, list)) else int(t) for t in tokens]
    if not idx or any(not 0 <= i < gh * gw for i in idx):
        raise ValueError(f"tokens must be a non-empty list of indices in [0, {gh * gw}) or (row, col) pairs, got {tokens}")
    sim = cosine_similarity_matrix(a)[idx]  # (len(tokens), T)
    fig, axes = _figure(1, len(idx), (size, size + 0.3))
    for ax, i, s in zip(axes, idx, sim):
        im = ax.imshow(s.reshape(gh, gw), cmap="viridis", vmin=float(sim.min()), vmax=1, interpolation="nearest")
        r, c = divmod(i, gw)
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        ax.set_title(f"token {i} = (row {r}, col {c})", fontsize=9)
        _off(ax)
    fig.colorbar(im, ax=axes, shrink=0.8, label="cosine similarity")
    if title:
        fig.suptitle(title)
    return fig
