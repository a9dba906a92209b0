"""What a DiT costs (paper §4, Table 4): Gflops against the patch size, Gflops per component as stacked bars, and the
four block designs' Gflops, parameters and FID. Figures are built without pyplot, like all of `ditlab.teach.viz`."""
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..eval import FLOPS_PARTS, estimate_flops, estimate_params, flops_breakdown, paper_table
from ..model import get_config
from .viz import _figure


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
        raise ValueError("rows must be a non-empty list of dicts (see ditlab.teach.viz_compute.block_rows())")
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
