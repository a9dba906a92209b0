"""Plots for the notebooks and widgets.

Every function returns a `matplotlib.figure.Figure` built without pyplot: nothing is shown or kept in
global state. In Jupyter, make the figure the last expression of a cell to display it; elsewhere call
`fig.savefig(path)`. Sections: images and patches · embeddings · block diagrams · compute (Gflops, parameters) ·
image tables.
The diffusion and training plots (schedules, noising, trajectories, loss curves, the training dashboard) are
in `ditlab.teach.viz_training`.
"""
import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

from ..eval import FLOPS_PARTS, estimate_flops, estimate_params, flops_breakdown, paper_table
from ..model import BLOCKS, get_config, patchify


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


# ---------------------------------------------------------------- embeddings (paper §3.2)

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


# ---------------------------------------------------------------- block diagrams (paper §3.2, Fig. 3)

_COLORS = dict(norm="#f7e6a1", attn="#f4b183", mlp="#9dc3e6", mod="#dddddd", cond="#a9d18e", io="white")
_HEIGHT, _GAP = dict(mod=0.42, plus=0.36, io=0.4, res=-0.38), 0.38  # box heights (default 0.72); gap between boxes


def _height(kind: str) -> float:
    return _HEIGHT.get(kind, 0.72)


def _block_rows(block: str) -> list[tuple]:
    """A block design bottom to top as (kind, label, side input): kinds io, res (a residual branch starts),
    norm, mod (scale/shift/gate), attn, mlp, plus (the residual sum)."""
    ada, zero = block.startswith("adaLN"), block == "adaLN-Zero"

    def sub(kind, label, n, side=None):
        rows = [("res", None, None), ("norm", "Layer Norm", None)]
        rows += [("mod", "Scale, Shift", f"γ{n}, β{n}")] if ada else []
        rows += [(kind, label, side)] + ([("mod", "Scale", f"α{n}")] if zero else [])
        return rows + [("plus", "+", None)]

    rows = [("io", "input tokens + [t; y] tokens" if block == "in-context" else "input tokens", None)]
    rows += sub("attn", "Multi-Head\nSelf-Attention", 1)
    if block == "cross-attention":
        rows += sub("attn", "Multi-Head\nCross-Attention", 2, "[t; y] tokens")
    rows += sub("mlp", "Pointwise\nFeedforward", 3 if block == "cross-attention" else 2)
    return rows + [("io", "output tokens (t, y tokens dropped)" if block == "in-context" else "output tokens", None)]


def _draw_block(ax, block: str, top: float) -> None:
    cx, w, left, right = 0.42, 0.56, 0.06, 0.93
    y, prev, res, side = 0.3, None, [], []
    arrow = dict(arrowstyle="-|>", color="black", lw=0.9, shrinkA=0, shrinkB=0)
    for kind, label, side_label in _block_rows(block):
        if kind == "res":
            res.append(y - 0.2)
            continue
        h = _height(kind)
        if prev is not None:
            ax.annotate("", (cx, y), (cx, prev), arrowprops=arrow)
        if kind == "plus":
            ax.plot(cx, y + h / 2, "o", ms=13, mfc="white", mec="black", mew=0.9, zorder=3)  # round at any aspect
            ax.text(cx, y + h / 2, "+", ha="center", va="center", fontsize=10, zorder=4)
            r = res.pop()
            ax.plot([cx, left, left], [r, r, y + h / 2], color="black", lw=0.9)
            ax.annotate("", (cx - 0.045, y + h / 2), (left, y + h / 2), arrowprops=arrow)
        else:
            bw = w * (0.62 if kind == "mod" else 1)
            ax.add_patch(FancyBboxPatch((cx - bw / 2, y), bw, h, boxstyle="round,pad=0,rounding_size=0.04",
                                        fc=_COLORS.get(kind, "white"), ec="black" if kind != "io" else "none", lw=0.9))
            ax.text(cx, y + h / 2, label, ha="center", va="center", fontsize=7.5)
            if side_label:
                side.append((y + h / 2, cx + bw / 2, side_label))
        prev, y = y + h, y + h + _GAP
    if block.startswith("adaLN"):  # the regression MLP on c = t + y feeds every Scale / Shift box
        ax.add_patch(FancyBboxPatch((right - 0.07, 0.25), 0.14, 0.5, boxstyle="round,pad=0,rounding_size=0.03",
                                    fc=_COLORS["cond"], ec="black", lw=0.9))
        ax.text(right, 0.5, "MLP", ha="center", va="center", fontsize=7.5, rotation=90)
        ax.text(right, 0.12, "c = t + y", ha="center", va="center", fontsize=7.5)
        ax.plot([right, right], [0.75, side[-1][0]], color="tab:green", lw=0.9)
    for yy, x0, label in side:
        start = right if block.startswith("adaLN") else right + 0.05
        ax.annotate("", (x0, yy), (start, yy), arrowprops={**arrow, "color": "tab:green"})
        ax.text((x0 + start) / 2, yy + 0.06, label, ha="center", va="bottom", fontsize=7, color="tab:green")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, top)
    ax.set_axis_off()


def block_diagrams(blocks: Sequence[str] = BLOCKS, highlight: str | None = "adaLN-Zero", size: float = 2.9) -> Figure:
    """The paper's Fig. 3: one diagram per block design (adaLN-Zero, adaLN, cross-attention, in-context), bottom to
    top, with the residual connections and where t and y come in; titled with DiT-XL/2's Gflops and FID-50K from
    Table 4. `highlight`: a design whose title is drawn in bold (None: none)."""
    names = [blocks] if isinstance(blocks, str) else list(blocks)
    if not names or any(b not in BLOCKS for b in names):
        raise ValueError(f"blocks must be a non-empty list of {list(BLOCKS)}, got {blocks!r}")
    if highlight is not None and highlight not in BLOCKS:
        raise ValueError(f"highlight must be None or one of {list(BLOCKS)}, got {highlight!r}")
    fig, axes = _figure(1, len(names), (size, 2.1 * size))
    paper = {r["block"]: r for r in paper_table(image_size=256) if r["model"] == "DiT-XL/2"}
    top = max(0.3 + sum(_height(k) + _GAP for k, _, _ in _block_rows(b)) for b in names)  # res rows add nothing
    for ax, b in zip(axes, names):
        _draw_block(ax, b, top)
        r = paper[b]
        ax.set_title(f"DiT block with {b}\nXL/2: {r['gflops']:.1f} Gflops, FID {r['fid50k_400k']:.1f}", fontsize=9,
                     fontweight="bold" if b == highlight else "normal")
    return fig


# ---------------------------------------------------------------- compute: Gflops and parameters (§4, Table 4)

def gflops_vs_patch(sizes: Sequence[str] = ("S", "B", "L", "XL"), patch_sizes: Sequence[int] = (2, 4, 8),
                    input_size: int = 32, paper: bool = True) -> Figure:
    """Forward Gflops (`ditlab.estimate_flops`) against patch size p, one line per model size, log scale.
    `paper=True` adds the paper's Table 4 values as crosses where a row matches (256 px = 32×32 latents)."""
    ps = sorted(patch_sizes)
    fig, (ax,) = _figure(1, 1, (5.5, 4.0))
    reported = {}
    if paper:
        reported = {(r["model"], r["config"].input_size): r["gflops"] for r in paper_table("adaLN-Zero")}
    labelled = False
    for s in sizes:
        g = [estimate_flops(get_config(f"DiT-{s}/{p}", input_size=input_size)) / 1e9 for p in ps]
        ax.plot(ps, g, "o-", label=f"DiT-{s}")
        pts = [(p, reported[(f"DiT-{s}/{p}", input_size)]) for p in ps if (f"DiT-{s}/{p}", input_size) in reported]
        if pts:
            ax.plot(*zip(*pts), "x", color="black", ms=9, mew=1.5, label=None if labelled else "paper (Table 4)")
            labelled = True
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ps, [f"p={p}\nT={(input_size // p) ** 2}" for p in ps])
    ax.minorticks_off()
    ax.set_xlabel("patch size p (tokens T = (I/p)²)")
    ax.set_ylabel("Gflops per forward pass")
    ax.set_title(f"Gflops vs patch size, I = {input_size}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def block_rows() -> list[dict]:
    """The paper's DiT-XL/2 block-design rows (Table 4) with our estimated Gflops and parameters next to them."""
    rows = []
    for r in paper_table(image_size=256):
        c = r["config"]
        if r["model"] == "DiT-XL/2":
            rows.append(dict(block=c.block, gflops=estimate_flops(c) / 1e9, params_m=estimate_params(c) / 1e6,
                             paper_gflops=r["gflops"], paper_params_m=r["params_m"], fid=r["fid50k_400k"]))
    return rows


def block_comparison_plot(rows: Sequence[dict] | None = None) -> Figure:
    """Bars for the four block designs: Gflops and parameters (ours vs paper) and the paper's FID-50K at 400K
    steps. `rows`: dicts with block, gflops, params_m, paper_gflops, paper_params_m, fid (default `block_rows()`)."""
    rows = list(block_rows() if rows is None else rows)
    if not rows:
        raise ValueError("rows must be a non-empty list of dicts (see ditlab.teach.viz.block_rows())")
    names = [r["block"] for r in rows]
    x = np.arange(len(rows))
    fig, axes = _figure(1, 3, (4.0, 3.6))
    for ax, key, label in zip(axes, ("gflops", "params_m"), ("Gflops", "parameters (M)")):
        ax.bar(x - 0.2, [r[key] for r in rows], 0.4, label="ditlab estimate")
        ax.bar(x + 0.2, [r["paper_" + key] for r in rows], 0.4, label="paper (Table 4)")
        ax.set_ylabel(label)
        ax.set_title(f"DiT-XL/2 {label}")
    axes[0].legend(fontsize=8, loc="lower right")
    ax = axes[2]
    ax.bar(x, [r.get("fid", float("nan")) for r in rows], 0.6, color="tab:green")
    ax.set_ylabel("FID-50K (lower is better)")
    ax.set_title("paper FID-50K after 400K steps")
    for ax in axes:
        ax.set_xticks(x, names, rotation=30, ha="right")
    return fig


def flops_breakdown_plot(sizes: Sequence[str] = ("S", "XL"), patch_sizes: Sequence[int] = (8, 4, 2),
                         input_size: int = 32) -> Figure:
    """Stacked bars of `ditlab.eval.flops_breakdown`: one axes per model size, one bar per patch size, one colour
    per component (patch embedding, attention projections and scores, MLP, adaLN, ...), the total on top and the
    factor over the previous bar: halving p quadruples the tokens, and the Gflops with them."""
    ps = list(patch_sizes)
    if not sizes or not ps or any(not isinstance(p, int) or p < 1 or input_size % p for p in ps):
        raise ValueError(f"sizes must be non-empty and patch_sizes positive ints dividing input_size={input_size}, "
                         f"got {sizes!r}, {patch_sizes!r}")
    fig, axes = _figure(1, len(sizes), (4.0, 3.8))
    colors = dict(zip(FLOPS_PARTS, ("tab:gray", "tab:olive", "tab:orange", "tab:red", "tab:blue", "tab:green",
                                    "tab:pink", "tab:purple")))
    for ax, s in zip(axes, sizes):
        parts = [flops_breakdown(get_config(f"DiT-{s}/{p}", input_size=input_size)) for p in ps]
        bottom = np.zeros(len(ps))
        for name in FLOPS_PARTS:
            h = np.array([d[name] for d in parts]) / 1e9
            ax.bar(range(len(ps)), h, 0.6, bottom=bottom, color=colors[name], label=name)
            bottom += h
        for i, total in enumerate(bottom):
            ax.text(i, total, f"{total:.3g}" + (f"\n×{total / bottom[i - 1]:.2f}" if i else ""), ha="center",
                    va="bottom", fontsize=8)
        ax.set_xticks(range(len(ps)), [f"p = {p}\nT = {(input_size // p) ** 2}" for p in ps])
        ax.set_ylim(0, bottom.max() * 1.22)
        ax.set_ylabel("Gflops per forward pass")
        ax.set_title(f"DiT-{s}, {input_size}×{input_size} latent", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].legend(handles[::-1], labels[::-1], fontsize=7, loc="upper left")  # in the order of the stack
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
