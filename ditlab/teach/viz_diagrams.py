"""DiT drawn (paper §3.2, Fig. 3): the four block designs, bottom to top, with their residual connections and where
the timestep t and the class y come in; and the whole network (`dit_overview`, notebook 00). Figures are built
without pyplot, like all of `ditlab.teach.viz`."""
from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from ..eval import paper_table
from ..model import BLOCKS
from .viz import _figure


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


def dit_overview(patch: int = 2, latent: int = 32, width: float = 9.4) -> Figure:
    """The whole network (paper Fig. 3, left): the noisy latent x_t, patchify, tokens + positions, N DiT blocks
    conditioned on t and y, the linear decoder back to noise ε̂ and covariance Σ̂. `width` in inches (940 px at
    100 dpi: it fits a notebook beside the file browser, unlike an ASCII drawing that wraps)."""
    if not isinstance(patch, int) or patch < 1 or latent % patch:
        raise ValueError(f"patch must be a positive int dividing latent={latent}, got {patch!r}")
    fig, (ax,) = _figure(1, 1, (width, 0.3 * width))
    t = (latent // patch) ** 2
    steps = [("noisy latent $x_t$", f"{latent}×{latent}×4", "io"),
             ("patchify", f"{patch}×{patch} patches", "norm"),
             (f"T = {t} tokens", "+ sin-cos positions", "norm"),
             ("N × DiT block", "adaLN-Zero", "attn"),
             ("linear decoder", "+ unpatchify", "mlp"),
             ("noise $\\hat\\epsilon$, cov. $\\hat\\Sigma$", f"{latent}×{latent}×8", "io")]
    bw, bh, y, gap = 1.45, 0.95, 1.75, 0.25
    arrow = dict(arrowstyle="-|>", color="black", lw=1.1, shrinkA=0, shrinkB=0)
    for i, (title, sub, kind) in enumerate(steps):
        x = 0.1 + i * (bw + gap)
        ax.add_patch(FancyBboxPatch((x, y), bw, bh, boxstyle="round,pad=0,rounding_size=0.08", fc=_COLORS[kind],
                                    ec="black", lw=1.0))
        ax.text(x + bw / 2, y + 0.62 * bh, title, ha="center", va="center", fontsize=10)
        ax.text(x + bw / 2, y + 0.28 * bh, sub, ha="center", va="center", fontsize=9, color="#333333")
        if i:
            ax.annotate("", (x, y + bh / 2), (x - gap, y + bh / 2), arrowprops=arrow)
    bx = 0.1 + 3 * (bw + gap) + bw / 2  # under the DiT blocks: the conditioning c = embed(t) + embed(y)
    ax.add_patch(FancyBboxPatch((bx - 1.1, 0.2), 2.2, 0.75, boxstyle="round,pad=0,rounding_size=0.08",
                                fc=_COLORS["cond"], ec="black", lw=1.0))
    ax.text(bx, 0.58, "timestep t + class label y\n→ embedding c", ha="center", va="center", fontsize=9.5)
    ax.annotate("", (bx, y), (bx, 0.95), arrowprops={**arrow, "color": "tab:green"})
    ax.text(bx + 0.08, 1.35, "scale, shift, gate\nin every block", ha="left", va="center", fontsize=9,
            color="tab:green")
    ax.set_xlim(0, 0.2 + 6 * bw + 5 * gap)
    ax.set_ylim(0, 2.9)
    ax.set_axis_off()
    ax.set_title(f"DiT (§3.2): predicts the noise in a latent; here p = {patch}", fontsize=10)
    return fig
