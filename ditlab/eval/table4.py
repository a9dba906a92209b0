"""The paper's Table 4 (Gflops, params, FID-50K at 400K steps for the 12 configs, the 4 block designs and XL/2 at
512 px) as typed rows, ditlab's Gflops beside them (`ditlab flops`), and the paper's Fig. 8 drawn from it."""
import csv
from pathlib import Path

import numpy as np

from ..model import PAPER_SIZES, get_config
from .flops import count_flops, estimate_flops, estimate_params

TABLE4 = Path(__file__).resolve().parent / "paper_table4.csv"
SIZE_COLORS = dict(S="tab:blue", B="tab:orange", L="tab:green", XL="tab:red")
PATCH_MARKERS = {8: "s", 4: "^", 2: "o"}


def paper_table(block: str | None = None, image_size: int | None = None, path: str | Path | None = None) -> list[dict]:
    """Rows of Table 4: model (str), block (str), image_size (int, px), gflops (float), params_m (float),
    fid50k_400k (float, None where the paper has none), config (the DiTConfig the row describes).
    `block` / `image_size` keep only matching rows: `paper_table("adaLN-Zero", 256)` is the 12 configs of Fig. 8."""
    with open(path or TABLE4) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    out = []
    for r in rows:
        row = dict(model=r["model"], block=r["block"], image_size=int(r["image_size"]), gflops=float(r["gflops"]),
                   params_m=float(r["params_m"]), fid50k_400k=float(r["fid50k_400k"]) if r["fid50k_400k"] else None)
        row["config"] = get_config(row["model"], block=row["block"], input_size=row["image_size"] // 8)
        if (block is None or row["block"] == block) and (image_size is None or row["image_size"] == image_size):
            out.append(row)
    return out


def draw_fig8(ax, highlight: dict | None = None, fit: bool = True, legend: bool = True) -> None:
    """The paper's Fig. 8 on `ax`: FID-50K at 400K steps against Gflops for the 12 configs at 256 px, one colour
    per size and one marker per patch size, with a log fit. `highlight`: dict(model, gflops, image_size) of a
    config to mark with a vertical line (and a ring around its paper point at 256 px)."""
    rows = paper_table("adaLN-Zero", 256)
    g = np.array([r["gflops"] for r in rows])
    fid = np.array([r["fid50k_400k"] for r in rows])
    for size in PAPER_SIZES:
        rs = sorted((r for r in rows if r["model"].startswith(f"DiT-{size}/")), key=lambda r: r["gflops"])
        ax.plot([r["gflops"] for r in rs], [r["fid50k_400k"] for r in rs], "-", color=SIZE_COLORS[size], lw=0.8,
                alpha=0.6)
        for r in rs:
            ax.scatter(r["gflops"], r["fid50k_400k"], color=SIZE_COLORS[size], s=40, zorder=3,
                       marker=PATCH_MARKERS[r["config"].patch_size])
    if fit:
        slope, icpt = np.polyfit(np.log10(g), fid, 1)
        xs = np.logspace(np.log10(g.min()) - 0.3, np.log10(g.max()) + 0.3, 50)
        corr = np.corrcoef(np.log10(g), fid)[0, 1]
        ax.plot(xs, slope * np.log10(xs) + icpt, "--", color="gray", lw=1, label=f"log fit, corr = {corr:.2f}")
    if highlight is not None:
        ax.axvline(highlight["gflops"], color="black", lw=1.2,
                   label=f"{highlight['model']} at {highlight['image_size']} px: {gflops_text(highlight['gflops'])} Gflops")
        paper = {r["model"]: r for r in rows}.get(highlight["model"])
        if paper is not None and highlight["image_size"] == 256:
            ax.scatter(paper["gflops"], paper["fid50k_400k"], s=250, facecolors="none", edgecolors="black", lw=2,
                       zorder=4)
    for s, c in SIZE_COLORS.items():
        ax.scatter([], [], color=c, label=f"DiT-{s}")
    for p, m in PATCH_MARKERS.items():
        ax.scatter([], [], color="gray", marker=m, label=f"p = {p}")
    ax.set_xscale("log")
    ax.set_ylim(0, 170)
    ax.set_xlabel("transformer Gflops per forward pass")
    ax.set_ylabel("FID-50K after 400K steps (lower is better)")
    ax.set_title("paper Fig. 8 / Table 4 (ImageNet 256 px)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        ax.legend(fontsize=9, ncol=2, loc="upper right", handlelength=1.2, columnspacing=0.8)  # the empty corner


def flops_table(method: str = "estimate", path=None, **options) -> list[dict]:
    """Our Gflops and params next to the paper's for every Table 4 row (`method`: "estimate" or "fvcore").
    `options`: DiTConfig fields applied to every row, e.g. the modern block's norm="rmsnorm", rope=True."""
    if method not in ("estimate", "fvcore"):
        raise ValueError(f"method must be 'estimate' or 'fvcore', got {method!r}")
    out = []
    for r in paper_table(path=path):
        c = r["config"].replace(**options)
        flops = estimate_flops(c) if method == "estimate" else count_flops(c)
        out.append(dict(model=r["model"], block=c.block, image_size=c.hw[0] * 8, tokens=c.num_tokens,
                        params_m=estimate_params(c) / 1e6, gflops=flops / 1e9,
                        paper_gflops=r["gflops"], paper_params_m=r["params_m"]))
    return out


def gflops_text(gflops: float) -> str:
    """How every figure and widget writes a Gflops number, so that labels and text agree: two decimals
    (0.36, 118.69), two significant digits below 1 (0.098)."""
    return f"{gflops:.2f}" if gflops >= 1 else f"{gflops:.2g}"


def format_table(rows: list[dict]) -> str:
    head = f"{'config':<10} {'block':<16} {'image':>5} {'tokens':>6} {'params(M)':>9} {'Gflops':>8} {'paper':>8} {'diff':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        diff = 100 * (r["gflops"] / r["paper_gflops"] - 1) if r.get("paper_gflops") else float("nan")
        lines.append(f"{r['model']:<10} {r['block']:<16} {r['image_size']:>5} {r['tokens']:>6} {r['params_m']:>9.1f} "
                     f"{r['gflops']:>8.2f} {r.get('paper_gflops', float('nan')):>8.2f} {diff:>+6.2f}%")
    return "\n".join(lines)
