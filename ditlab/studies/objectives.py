"""`ditlab objectives`: after DiT, one change at a time on the same backbone (notebook 07).

Trains the same DiT with equal steps, batch and learning rate under four recipes,

    a  DDPM: ε-prediction + learned Σ, L_hybrid (the paper)          sampled with DDIM (and DDPM)
    b  rectified flow (Linear path), velocity prediction (SiT)        sampled with the Euler ODE (and Heun)
    c  (b) + logit-normal training times (SD3)
    d  (c) + the modern block: RMSNorm, SwiGLU, QK-norm, 2D RoPE

then samples each at several numbers of function evaluations (NFE) and judges the samples (conditional
accuracy and Fréchet distance in the judge's features). Writes objectives.csv, objectives.png (accuracy and FD
against NFE) and objectives_grids.png (samples side by side). Finished runs are reused, and their judged rows
too when the settings match (runs/<out>/<run>/judged.json), so subsets can be run in parallel processes and
merged by a last call with every run.
"""
import json
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ..data import load_dataset
from ..eval import estimate_flops, estimate_params, evaluate, feature_stats, get_judge
from ..io import atomic_write, check_output_dir, make_grid
from ..sampling import sample
from ..training import read_log, train
from ..training.advice import on_cli, opt
from .runs import logged_steps, read_rows, train_seconds, write_rows

MODERN = dict(norm="rmsnorm", mlp="swiglu", qk_norm=True, rope=True)
RECIPES = {
    "a": dict(label="DDPM ε + learned Σ", train=dict(objective="ddpm"), samplers=("ddim", "ddpm")),
    "b": dict(label="rectified flow, velocity", train=dict(objective="flow", path="linear", prediction="velocity"),
              samplers=("euler", "heun")),
    "c": dict(label="(b) + logit-normal t", train=dict(objective="flow", path="linear", prediction="velocity",
                                                       t_sampling="logit-normal"), samplers=("euler", "heun")),
    "d": dict(label="(c) + modern block", train=dict(objective="flow", path="linear", prediction="velocity",
                                                     t_sampling="logit-normal", model_args=MODERN),
              samplers=("euler", "heun")),
}
NFES = (4, 8, 16, 32, 64)
CFG_SCALES = (1.0, 4.0)  # unguided (FD as in the paper's Table 4) and guided (accuracy)
EVALS_PER_STEP = {"ddim": 1, "ddpm": 1, "euler": 1, "heun": 2}
FIELDS = ["run", "label", "sampler", "nfe", "sample_steps", "cfg_scale", "accuracy", "fd", "n_samples", "model",
          "params", "gflops", "train_steps", "batch_size", "final_loss", "train_seconds"]


def run_objectives(runs=tuple(RECIPES), model="DiT-Nano/2", data="digits", image_size=16, steps=3000,
                   batch_size=64, lr=2e-3, nfes=NFES, samples_per_class=50, cfg_scales=CFG_SCALES, seed=0,
                   model_args=None, out_dir="runs/objectives", reuse=True, progress=True,
                   judge_kwargs=None) -> list[dict]:
    """Train and judge each recipe; returns the CSV rows (also in out_dir/objectives.csv), one per (run, sampler,
    NFE, guidance scale). The sampler takes NFE/k steps, k its network evaluations per step (Heun: 2); NFEs it
    cannot hit are skipped. Judged without guidance (the FD protocol of the paper's Table 4) and with it (cleaner
    digits, less variety: the accuracy criterion). `model_args` (e.g. a smaller depth) apply to every run, on top
    of recipe d's modern block."""
    unknown = [r for r in runs if r not in RECIPES]
    if unknown or not runs:
        raise ValueError(f"runs must be a non-empty subset of {list(RECIPES)}, got {list(runs)!r}")
    if not nfes or any(not isinstance(n, int) or n < 1 for n in nfes):
        raise ValueError(f"nfes must be positive ints, e.g. {list(NFES)}, got {nfes!r}")
    if not cfg_scales or any(not s >= 1 for s in cfg_scales):
        raise ValueError(f"cfg_scales must be guidance scales >= 1, e.g. {list(CFG_SCALES)}, got {cfg_scales!r}")
    out = check_output_dir(out_dir, "out_dir")  # before the data is loaded
    train_set = load_dataset(data, split="train", image_size=image_size)
    real = load_dataset(data, split="test", image_size=image_size)
    judge = get_judge(data, image_size=image_size, progress=progress, **(judge_kwargs or {}))
    real_stats = feature_stats(judge, real.get_batch(torch.arange(len(real)))[0])
    rows, grids = [], {}
    for key in runs:
        recipe = RECIPES[key]
        kw = dict(recipe["train"])
        kw["model_args"] = {**(model_args or {}), **kw.get("model_args", {})}
        run_dir = out / key
        done = _finished(run_dir, steps) if reuse else False
        t0 = time.perf_counter()
        run = train(model=model, dataset=train_set, steps=steps, batch_size=batch_size, lr=lr, ema_decay=0.999,
                    warmup_steps=0, seed=seed, out_dir=str(run_dir), sample_every=0, ckpt_every=steps, verdict=False,
                    log_every=max(1, steps // 20), progress=progress, resume=done, overwrite=not done,
                    **kw)  # a run not reused is started over
        seconds = train_seconds(run_dir) if done else time.perf_counter() - t0
        ema, c = run["ema"], run["config"]
        settings = dict(model=model, data=str(data), image_size=image_size, lr=lr, train_steps=steps,
                        batch_size=batch_size, seed=seed, n_samples=samples_per_class * c.num_classes)
        judged = _judged(run_dir, settings) if done else {}  # (sampler, NFE, scale) -> row, judged earlier
        labels = [k for _ in range(samples_per_class) for k in range(c.num_classes)]
        for sampler, nfe in _schedule(recipe["samplers"], nfes):
            for scale in cfg_scales:
                if (sampler, nfe, float(scale)) in judged:
                    continue
                s = sample(ema, labels, steps=nfe // EVALS_PER_STEP[sampler], sampler=sampler, cfg_scale=scale,
                           seed=seed, progress=False)
                m = evaluate(judge, s.images, s.labels, real_stats)
                judged[(sampler, nfe, float(scale))] = dict(
                    run=key, label=recipe["label"], sampler=sampler, nfe=nfe, sample_steps=nfe // EVALS_PER_STEP[sampler],
                    cfg_scale=float(scale), accuracy=m["accuracy"], fd=m["fd"], n_samples=len(labels))
                atomic_write(run_dir / "judged.json", lambda tmp: Path(tmp).write_text(
                    json.dumps(dict(settings=settings, rows=list(judged.values())))))
        judged = [judged[(sampler, nfe, float(scale))] for sampler, nfe in _schedule(recipe["samplers"], nfes)
                  for scale in cfg_scales]
        for r in judged:
            rows.append(dict(r, model=model, params=estimate_params(c), gflops=estimate_flops(c) / 1e9,
                             train_steps=steps, batch_size=batch_size, final_loss=read_log(run_dir)[-1]["loss"],
                             train_seconds=round(seconds, 1)))
        first = recipe["samplers"][0]
        for nfe in nfes:  # two samples of every class per NFE, for the figure
            grids[(key, nfe)] = sample(ema, list(range(c.num_classes)) * 2, steps=nfe // EVALS_PER_STEP[first],
                                       sampler=first, cfg_scale=max(cfg_scales), seed=seed, progress=False).images
        write_csv(rows, out / "objectives.csv")
    objectives_plot(rows).savefig(out / "objectives.png", dpi=120, bbox_inches="tight")
    grids_figure(grids, rows).savefig(out / "objectives_grids.png", dpi=120, bbox_inches="tight")
    return rows


def _schedule(samplers, nfes):
    """(sampler, NFE) pairs a sampler can hit exactly (Heun: even NFEs)."""
    return [(s, n) for s in samplers for n in nfes if n % EVALS_PER_STEP[s] == 0]


def _judged(run_dir: Path, settings: dict) -> dict:
    """(sampler, NFE, scale) -> the row an earlier call judged for this run with the same settings."""
    path = run_dir / "judged.json"
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    if any(stored.get("settings", {}).get(k) != v for k, v in settings.items()):
        return {}
    return {(r["sampler"], r["nfe"], float(r["cfg_scale"])): r for r in stored["rows"]}


def _finished(run_dir: Path, steps: int) -> bool:
    """True when run_dir holds a resumable run of at most `steps` steps (finished ones are only re-judged)."""
    done = logged_steps(run_dir)
    if done is not None and done > steps:
        raise ValueError(f"{run_dir} holds a run of {done} steps, more than {opt('steps', steps)}: pass another "
                         f"{opt('out_dir', 'DIR')}, or {'--retrain' if on_cli() else 'reuse=False'} to train it again")
    return done is not None


def write_csv(rows: list[dict], path) -> None:
    write_rows(rows, path, FIELDS)


def read_csv(path) -> list[dict]:
    return read_rows(path, ints=("nfe", "sample_steps", "n_samples", "params", "train_steps", "batch_size"),
                     floats=("cfg_scale", "accuracy", "fd", "gflops", "final_loss", "train_seconds"))


def summarize(rows: list[dict], threshold: float = 0.95, at_nfe: int = 8) -> list[dict]:
    """Per run and sampler: the fewest NFE at which judge accuracy ≥ threshold with the strongest guidance judged
    (None if never), accuracy there at `at_nfe`, and the FD at `at_nfe` and the best FD without guidance (the
    weakest scale judged)."""
    out = []
    hi, lo = max(r["cfg_scale"] for r in rows), min(r["cfg_scale"] for r in rows)
    for key in dict.fromkeys(r["run"] for r in rows):
        for sampler in dict.fromkeys(r["sampler"] for r in rows if r["run"] == key):
            rs = sorted((r for r in rows if r["run"] == key and r["sampler"] == sampler), key=lambda r: r["nfe"])
            guided, plain = [r for r in rs if r["cfg_scale"] == hi], [r for r in rs if r["cfg_scale"] == lo]
            ok = [r["nfe"] for r in guided if r["accuracy"] >= threshold]
            acc_at = [r["accuracy"] for r in guided if r["nfe"] == at_nfe]
            fd_at = [r["fd"] for r in plain if r["nfe"] == at_nfe]
            out.append(dict(run=key, label=rs[0]["label"], sampler=sampler, min_nfe=ok[0] if ok else None,
                            acc_at=acc_at[0] if acc_at else None, fd_at=fd_at[0] if fd_at else None,
                            best_fd=min(r["fd"] for r in plain), guided=hi, plain=lo))
    return out


def markdown_table(rows: list[dict], threshold: float = 0.95, at_nfe: int = 8) -> str:
    """The README's table: one line per run and sampler."""
    summary = summarize(rows, threshold, at_nfe)
    hi, lo = summary[0]["guided"], summary[0]["plain"]
    g = f"guidance {hi:g}"
    p = "no guidance" if lo == 1 else f"guidance {lo:g}"
    lines = [f"| run | objective | sampler | fewest NFE with accuracy ≥ {threshold} ({g}) | accuracy at {at_nfe} NFE "
             f"({g}) | FD at {at_nfe} NFE ({p}) | best FD ({p}) |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        fd = "–" if s["fd_at"] is None else f"{s['fd_at']:.1f}"
        acc = "–" if s["acc_at"] is None else f"{s['acc_at']:.3f}"
        lines.append(f"| ({s['run']}) | {s['label']} | {s['sampler']} | {s['min_nfe'] or 'not reached'} | {acc} | "
                     f"{fd} | {s['best_fd']:.1f} |")
    return "\n".join(lines)


def objectives_plot(rows: list[dict]):
    """Judge accuracy (left) and Fréchet distance (right) against NFE, one row of panels per guidance scale,
    one line per run and sampler."""
    scales = sorted({r["cfg_scale"] for r in rows})
    fig = Figure(figsize=(10, 3.6 * len(scales) + 0.6))
    axes = np.atleast_2d(fig.subplots(len(scales), 2, squeeze=False))
    colors = dict(zip(RECIPES, ("tab:gray", "tab:blue", "tab:orange", "tab:green")))
    nfes = sorted({r["nfe"] for r in rows})
    for (ax1, ax2), scale in zip(axes, scales):
        for key in dict.fromkeys(r["run"] for r in rows):
            for sampler in dict.fromkeys(r["sampler"] for r in rows if r["run"] == key):
                rs = sorted((r for r in rows if r["run"] == key and r["sampler"] == sampler and r["cfg_scale"] == scale),
                            key=lambda r: r["nfe"])
                first = sampler == RECIPES[key]["samplers"][0]
                style = dict(color=colors[key], marker="o", ls="-" if first else ":", alpha=1 if first else 0.6,
                             label=f"({key}) {rs[0]['label']}, {sampler}" if rs else None)
                ax1.plot([r["nfe"] for r in rs], [r["accuracy"] for r in rs], **style)
                ax2.plot([r["nfe"] for r in rs], [r["fd"] for r in rs], **style)
        guidance = "no guidance" if scale == 1 else f"guidance {scale:g}"
        ax1.axhline(0.95, color="black", lw=0.8, ls="--")
        ax1.set(xscale="log", xlabel="function evaluations (NFE)", ylabel="judge accuracy", ylim=(0, 1.02),
                title=f"accuracy, {guidance}")
        ax2.set(xscale="log", yscale="log", xlabel="function evaluations (NFE)",
                ylabel="Fréchet distance (judge features)", title=f"FD, {guidance}")
        for ax in (ax1, ax2):
            ax.set_xticks(nfes)
            ax.set_xticklabels([str(n) for n in nfes])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.grid(alpha=0.3, which="both")
    if rows:
        r = rows[0]
        fig.suptitle(f"{r['model']}, {r['train_steps']} training steps × batch {r['batch_size']} each, "
                     f"{r['n_samples']} samples per point", fontsize=10)
    fig.tight_layout(rect=(0, 0.1 / len(scales), 1, 1))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=7, frameon=False)
    return fig


def grids_figure(grids: dict, rows: list[dict]):
    """Samples side by side: one column per run, one row per NFE (each cell: two samples of every class)."""
    runs = list(dict.fromkeys(k for k, _ in grids))
    nfes = sorted({n for _, n in grids})
    fig = Figure(figsize=(3.2 * len(runs), 0.85 * len(nfes) + 0.5))  # each cell: 2 rows of 10 images
    axes = np.atleast_2d(fig.subplots(len(nfes), len(runs), squeeze=False))
    labels = {r["run"]: r["label"] for r in rows}
    for j, key in enumerate(runs):
        for i, nfe in enumerate(nfes):
            ax = axes[i, j]
            images = grids.get((key, nfe))
            if images is not None:
                grid = make_grid(images, nrow=max(1, len(images) // 2)).numpy()  # (H', W', C) uint8
                ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"({key}) {labels.get(key, '')}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"NFE {nfe}", fontsize=8)
    fig.tight_layout()
    return fig
