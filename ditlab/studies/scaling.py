"""`ditlab scaling`: the paper's scaling result (§5, Fig. 2 / Fig. 8, Table 4) in miniature on a CPU.

Trains a grid of model sizes × patch sizes for the same number of steps on one dataset, samples each with
DDIM + guidance, and judges the samples (Fréchet distance in the judge's feature space, conditional
accuracy). Writes `scaling.csv` and `scaling.png` (quality against Gflops, beside the paper's points).

Each model trains in its own folder `<out_dir>/<steps>-steps/DiT-<size>_<p>` (`<steps>-steps-flow/` for the flow
matching objective): a study with fewer or more steps, or the other objective, never collides with an earlier one, a
finished run is only re-judged, and an interrupted one (Ctrl-C saves a checkpoint first) continues from where it
stopped.
"""
import json
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ..data import load_dataset
from ..diffusion import create_diffusion
from ..eval import draw_fig8, estimate_flops, estimate_params, evaluate, feature_stats, get_judge
from ..io import check_output_dir
from ..model import DiT, get_config
from ..sampling import sample
from ..training import read_log, train
from .runs import logged_steps, read_rows, train_seconds, write_rows

FIELDS = ["model", "size", "patch", "image_size", "tokens", "params", "gflops", "steps", "objective", "cfg_scale", "fd",
          "accuracy", "final_loss", "train_seconds"]
OBJECTIVES = ("ddpm", "flow")  # the paper's DDPM (learned Σ), or flow matching (SiT; learns faster on a CPU)


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); nan for fewer than two points."""
    if len(a) < 2:
        return float("nan")
    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = x.argsort()
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # ties share their mean rank
            r[x == v] = r[x == v].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def step_seconds(name: str, train_set, batch_size: int, repeats: int = 2) -> float:
    """Seconds of one training step (forward, backward, AdamW) of DiT `name` on a batch of train_set, measured
    after one warm-up step: the time estimate printed before each model of the study."""
    cfg = get_config(name, input_size=train_set.image_size, in_channels=train_set.channels,
                     num_classes=train_set.num_classes)
    with torch.random.fork_rng():  # leaves the caller's random state alone
        torch.manual_seed(0)
        model, diffusion = DiT(cfg), create_diffusion("", learn_sigma=cfg.learn_sigma)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x, y = train_set.get_batch(torch.arange(batch_size) % len(train_set))
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            t = torch.randint(0, diffusion.num_timesteps, (batch_size,))
            loss = diffusion.training_losses(model, x, t, dict(y=y))["loss"].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    return min(times[1:])


def run_scaling(sizes=("Pico", "Nano", "Mi"), patches=(2, 4, 8), data="digits", image_size=16, steps=4000,
                objective="ddpm", batch_size=64, lr=2e-3, samples_per_class=50, sample_steps=25, cfg_scale=1.0, seed=0,
                out_dir="runs/scaling", progress=True, judge_kwargs=None, reuse=True) -> list[dict]:
    """Train and judge every (size, patch) pair; returns the CSV rows (also written to out_dir/scaling.csv).

    cfg_scale=1 (no guidance) is the protocol of the paper's Table 4 / Fig. 8 FIDs: guidance trades diversity for
    fidelity and, at scale 4, hides the differences between models. objective: "ddpm" (the paper's) or "flow" (flow
    matching, sampled with Euler: a short CPU run leaves chance level several times sooner, data/objectives.csv).
    reuse: a run folder that already holds a checkpoint (of this `steps` and objective: the folder says it) is resumed
    (or, if finished, only re-judged) instead of retrained; with reuse=False it is cleared and trained from scratch.
    progress: prints each model's estimated training time (`step_seconds` × steps) before it starts, and the
    training bar."""
    if not sizes or not patches:
        raise ValueError("sizes and patches must be non-empty")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
    for p in patches:
        if image_size % p:
            raise ValueError(f"image_size={image_size} is not divisible by patch size {p}")
    out = check_output_dir(out_dir, "out_dir")  # before the data is loaded
    train_set = load_dataset(data, split="train", image_size=image_size)
    real = load_dataset(data, split="test", image_size=image_size)
    judge = get_judge(data, image_size=image_size, progress=progress, **(judge_kwargs or {}))
    real_stats = feature_stats(judge, real.get_batch(torch.arange(len(real)))[0])  # once for all runs
    rows, n_runs = [], len(sizes) * len(patches)
    names = [f"DiT-{size}/{p}" for size in sizes for p in patches]
    left = {n: steps - ((logged_steps(study_dir(out, steps, objective) / n.replace("/", "_")) if reuse else None) or 0)
            for n in names}
    per_step = {n: step_seconds(n, train_set, batch_size) if left[n] and progress else 0.0 for n in names}
    if progress:  # the header: what will happen, and for how long (a few timed steps of each model)
        print(f"scaling: {data} ({len(train_set)} images) at {image_size} px | {n_runs} models {', '.join(names)} | "
              f"{steps} steps each, batch {batch_size}, {objective} | precision auto | -> "
              f"{study_dir(out, steps, objective)} | about "
              f"{_duration(sum(left[n] * per_step[n] for n in names))} of training in all", flush=True)
    for size in sizes:
        for p in patches:
            name = f"DiT-{size}/{p}"
            run_dir = study_dir(out, steps, objective) / name.replace("/", "_")
            done = logged_steps(run_dir) if reuse else None  # an earlier run of this study: finish or re-judge it
            if progress:
                est = f"about {_duration(left[name] * per_step[name])}" if left[name] else "finished"
                print(f"[{len(rows) + 1}/{n_runs}] {name}: {left[name]} of {steps} steps to train, {est} "
                      f"(Ctrl-C saves a checkpoint; run again to continue)", flush=True)
            t0 = time.perf_counter()
            run = train(model=name, objective=objective, warmup_steps=0, dataset=train_set, steps=steps,
                        batch_size=batch_size, lr=lr, ema_decay=0.999, seed=seed, out_dir=str(run_dir), sample_every=0,
                        ckpt_every=max(1, steps // 10), log_every=max(1, steps // 20), progress=progress, verdict=False,
                        resume=done is not None, overwrite=done is None)  # a run not reused is started over
            seconds = time.perf_counter() - t0 if not done else train_seconds(run_dir)
            labels = [c for _ in range(samples_per_class) for c in range(run["config"].num_classes)]
            s = sample(run["ema"], labels, steps=sample_steps, cfg_scale=cfg_scale, seed=seed, progress=False)
            m = evaluate(judge, s.images, s.labels, real_stats)
            c = run["config"]
            rows.append(dict(model=name, size=size, patch=p, image_size=image_size, tokens=c.num_tokens,
                             params=estimate_params(c), gflops=estimate_flops(c) / 1e9, steps=steps,
                             objective=objective, cfg_scale=cfg_scale, fd=m["fd"], accuracy=m["accuracy"],
                             final_loss=read_log(run_dir)[-1]["loss"], train_seconds=round(seconds, 1)))
            write_csv(rows, out / "scaling.csv")
    fig = scaling_plot(rows)
    fig.savefig(out / "scaling.png", dpi=120, bbox_inches="tight")
    summary = summarize(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return rows


def study_dir(out_dir, steps: int, objective: str = "ddpm"):
    """The folder of a study's runs of `steps` steps each (of `objective`), inside out_dir."""
    return Path(out_dir) / (f"{steps}-steps" if objective == "ddpm" else f"{steps}-steps-{objective}")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def write_csv(rows: list[dict], path) -> None:
    write_rows(rows, path, FIELDS)


def read_csv(path) -> list[dict]:
    return read_rows(path, ints=("patch", "image_size", "tokens", "params", "steps"),  # cfg_scale: absent from
                     floats=("gflops", "cfg_scale", "fd", "accuracy", "final_loss", "train_seconds"))  # older CSVs


def summarize(rows: list[dict]) -> dict:
    """The paper's two findings, checked on our rows: quality improves with Gflops (Spearman of Gflops vs
    FD), and at fixed model size smaller patches are better (FD decreasing as p shrinks)."""
    by_size = {}
    for r in rows:
        by_size.setdefault(r["size"], []).append(r)
    monotone = {s: all(a["fd"] > b["fd"] for a, b in zip(sorted(rs, key=lambda r: -r["patch"]),
                                                          sorted(rs, key=lambda r: -r["patch"])[1:]))
                for s, rs in by_size.items()}
    return dict(spearman_gflops_fd=spearman([r["gflops"] for r in rows], [r["fd"] for r in rows]),
                smaller_patch_better=monotone, n_runs=len(rows))


TREND = -0.8  # Spearman(Gflops, FD) at or below which a study shows the paper's trend (data/scaling.csv: -0.93)


def trend_sentence(rows: list[dict], reference: list[dict] | None = None, chance: float = 0.1) -> str:
    """One sentence on what a study's rows show, computed from them: the paper's trend (Spearman(Gflops, FD) <=
    TREND) or not, the models still near chance accuracy (`chance`: 1 / classes, 0.1 for the digits), and, where the
    trend is missing, what the `reference` rows (a longer study) show instead."""
    s, n = summarize(rows), len(rows)
    best = min(rows, key=lambda r: r["fd"])
    near = [r["model"] for r in rows if r["accuracy"] < 1.5 * chance]
    chance_note = f"; {len(near)} of {n} models are near chance accuracy ({', '.join(near)})" if near else ""
    rho = (f"Spearman(Gflops, FD) {s['spearman_gflops_fd']:+.2f} over {n} models" if s["spearman_gflops_fd"] == \
           s["spearman_gflops_fd"] else f"no rank correlation from {n} model(s)")  # nan: < 2 points or all tied
    if s["spearman_gflops_fd"] <= TREND:
        patches = [k for k, ok in s["smaller_patch_better"].items() if not ok]
        patch_note = ("at every size each smaller patch was better" if not patches else
                      f"not every smaller patch won yet ({', '.join(patches)})")
        return (f"Your run shows the paper's trend, more Gflops -> lower FD: {rho}; {patch_note}; the best is "
                f"{best['model']} (FD {best['fd']:.1f}, accuracy {best['accuracy']:.2f}){chance_note}.")
    ref = (f" The reference study ({reference[0]['steps']} steps each, {len(reference)} models) shows it: Spearman "
           f"{summarize(reference)['spearman_gflops_fd']:+.2f}." if reference else "")
    return (f"Your run is too short or too noisy to show the paper's trend: {rho} (the trend needs <= {TREND})"
            f"{chance_note}; more steps and samples sharpen it.{ref}")


def scaling_plot(rows: list[dict]):
    """Left: our FD against Gflops (one line per size, patch annotated). Right: the paper's FID-50K against
    Gflops (Table 4 / Fig. 8)."""
    fig = Figure(figsize=(10, 4))
    ax, ax2 = fig.subplots(1, 2)
    by_size = {}
    for r in rows:
        by_size.setdefault(r["size"], []).append(r)
    for size, rs in by_size.items():
        rs = sorted(rs, key=lambda r: r["gflops"])
        ax.plot([r["gflops"] for r in rs], [r["fd"] for r in rs], "o-", label=f"DiT-{size}")
        for r in rs:
            ax.annotate(f"/{r['patch']}", (r["gflops"], r["fd"]), textcoords="offset points", xytext=(4, 4))
    title = "ditlab"
    if rows:
        cfg = rows[0].get("cfg_scale", 1.0)
        title += f", {rows[0]['image_size']} px, {rows[0]['steps']} steps" + \
            (f" {rows[0]['objective']}" if rows[0].get("objective", "ddpm") != "ddpm" else "") + ", " + \
            ("no guidance" if float(cfg) == 1 else f"guidance {float(cfg):g}")
    ax.set(xscale="log", yscale="log", xlabel="Gflops (forward, one image)",
           ylabel="Fréchet distance (judge features, log)", title=title)
    ax.legend()
    draw_fig8(ax2, fit=False)
    fig.tight_layout()
    return fig
