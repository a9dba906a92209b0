"""The verdict at the end of a run: a small guided sample grid, judged, next to the range the data allows.

Where a judge exists for the data (the built-in digits, MNIST, CIFAR-10; `eval/judge.py`, trained once and cached)
`train()` ends by sampling `per_class` images of every class with the model's default sampler (DDIM for DDPM,
Euler for flow matching) and classifier-free guidance, and scores them:

    accuracy   share of samples the judge puts in the class they were conditioned on, between chance (1 / classes)
               and the judge's accuracy on real test images
    FD         Fréchet distance in the judge's features to the real test images, between real test images (the floor
               at this sample count) and noise images

and says in plain words whether the run is good, partly trained or untrained, with a hint (train longer, the quick
recipe, a larger model) read from the loss curve and the recipe. The numbers go to the run's metrics.json.
"""
import json
import time
from pathlib import Path

import torch

from ..data import load_dataset
from ..eval import evaluate, get_judge
from ..eval.metrics import feature_stats
from ..io import atomic_write
from ..sampling import sample, samplers_for
from .recipes import LONG_RUN

JUDGED = ("digits", "mnist", "cifar10")  # dataset names with a judge
GOOD = 0.9  # good: accuracy >= GOOD x the judge's accuracy on real images
CHANCE = 0.1  # at chance: accuracy below chance + CHANCE x (real accuracy - chance)
FALLING = 0.02  # the loss is still falling: its mean over the last fifth of the log is this much below the fifth before
PIPELINE_CHECK = 100  # runs of fewer steps check the pipeline: judged by a judge trained in seconds (get_judge smoke)


def judge_source(cfg, dataset) -> tuple[str | None, str]:
    """(what to pass to get_judge, "") when a judge exists for the run's data, else (None, why not)."""
    if cfg.vae:
        return None, "the samples are VAE latents (judges see pixels)"
    if dataset.name not in JUDGED:
        return None, f"no judge for {dataset.name or 'this data'!r}; judges exist for {', '.join(JUDGED)}"
    if Path(str(cfg.data)).stem.lower() != dataset.name and str(cfg.data).lower() != dataset.name:
        return None, f"the dataset passed ({dataset.name!r}) is not data={cfg.data!r}"
    return str(cfg.data), ""


def loss_trend(log: list[dict]) -> float | None:
    """Relative drop of the mean loss from the second-last to the last fifth of the log (None: too short)."""
    k = len(log) // 5
    if k < 2:
        return None
    last, before = (sum(r["loss"] for r in rows) / k for rows in (log[-k:], log[-2 * k:-k]))
    return (before - last) / before


def assess(accuracy: float, chance: float, real_accuracy: float, trend: float | None, recipe: str, steps: int,
           model: str) -> tuple[str, str]:
    """(status, hint in plain words) from the judged accuracy, the loss trend and the recipe."""
    falling = trend is not None and trend > FALLING
    longer = f"train longer (the same command with --resume --steps {2 * steps})"
    if accuracy >= GOOD * real_accuracy:
        return "good", ("good: the samples are recognised as the requested class about as often as real images"
                        + ("; the loss is still falling: more steps would still improve them" if falling else ""))
    paper_short = recipe == "paper" and steps < LONG_RUN
    if accuracy < chance + CHANCE * (real_accuracy - chance):
        status, what = "untrained", "accuracy at chance: the samples do not show the requested class"
    else:
        status, what = "under-trained", "the samples show the requested class only part of the time"
    if paper_short:
        return status, (f"{what}. The paper's recipe (lr 1e-4, EMA 0.9999) is made for 100K+ steps, not {steps}: "
                        "use --recipe quick")
    if falling:
        return status, f"{what}; the loss is still falling: {longer}"
    if trend is None:
        return status, f"{what}; the run is too short to read the loss curve: {longer}"
    return status, (f"{what}; the loss has flattened: a larger model or a smaller patch than {model} learns more "
                    "(e.g. --model DiT-Mi/2), or try --recipe quick")


def run_verdict(model, cfg, dataset, log: list[dict], per_class: int = 10, steps: int | None = None,
                cfg_scale: float | None = None, grid: str | Path | None = None, smoke: bool = False) -> dict:
    """Judge `model` (the EMA) -> dict for metrics.json; status "skipped" with a reason where no judge exists.

    steps / cfg_scale default to the run's sample_steps / sample_cfg; grid: where to save the sample grid."""
    source, why = judge_source(cfg, dataset)
    if source is None:
        return dict(status="skipped", reason=why)
    t0 = time.perf_counter()
    mcfg = model.config
    steps, cfg_scale = steps or cfg.sample_steps, cfg_scale if cfg_scale is not None else cfg.sample_cfg
    judge = get_judge(source, image_size=mcfg.input_size, channels=mcfg.in_channels, progress=cfg.progress,
                      smoke=smoke or cfg.steps < PIPELINE_CHECK)
    real = load_dataset(source, split="test", image_size=mcfg.input_size, channels=mcfg.in_channels)
    real_x = real.get_batch(torch.arange(len(real)))[0]
    real_stats = feature_stats(judge, real_x)
    n_classes = mcfg.num_classes
    labels = [c for _ in range(per_class) for c in range(n_classes)]  # one column per class
    sampler = samplers_for(model)[0]  # ddim (DDPM) or euler (flow matching)
    out = sample(model, labels, steps=steps, sampler=sampler, cfg_scale=cfg_scale if mcfg.has_null_class else 1.0,
                 seed=0, progress=False)
    if grid is not None:
        out.save(grid, nrow=n_classes)
    m = evaluate(judge, out.images, out.labels, real_stats)
    g = torch.Generator().manual_seed(0)
    n = len(labels)
    x, y = dataset.get_batch(torch.randperm(len(dataset), generator=g)[:n])  # n real training images
    real_fd = evaluate(judge, x, y, real_stats)["fd"]
    noise_fd = evaluate(judge, torch.randn(n, *real_x.shape[1:], generator=g).clamp(-1, 1), labels, real_stats)["fd"]
    chance, real_acc = 1 / n_classes, judge.info.get("test_accuracy", 1.0)
    trend = loss_trend(log)
    status, hint = assess(m["accuracy"], chance, real_acc, trend, cfg.recipe, cfg.steps, cfg.model)
    return dict(status=status, accuracy=round(m["accuracy"], 4), fd=round(m["fd"], 2), n=n, sampler=sampler, sample_steps=steps,
                cfg_scale=cfg_scale, chance=round(chance, 4), real_accuracy=round(real_acc, 4),
                real_fd=round(real_fd, 2), noise_fd=round(noise_fd, 2),
                loss_trend=None if trend is None else round(trend, 4), hint=hint, judge=source,
                seconds=round(time.perf_counter() - t0, 1))


def format_verdict(v: dict) -> str:
    if v["status"] in ("skipped", "failed"):
        return f"verdict: {v['status']} ({v['reason']})"
    return "\n".join([
        f"verdict ({v['n']} samples, {v['sample_steps']} {v['sampler']} steps, guidance {v['cfg_scale']:g}; judge trained on "
        f"{v['judge']}):",
        f"  accuracy {v['accuracy']:7.3f}   expected: chance {v['chance']:.2f} ... real images {v['real_accuracy']:.2f}"
        "   (share of samples recognised as the requested class)",
        f"  FD       {v['fd']:7.1f}   expected: real images {v['real_fd']:.1f} ... noise {v['noise_fd']:.1f}"
        "   (Fréchet distance in the judge's features, lower is better)",
        f"  {v['hint']}"])


def write_metrics(out_dir: Path, metrics: dict) -> None:
    """metrics.json of a run, written atomically."""
    text = json.dumps(metrics, indent=1)
    atomic_write(Path(out_dir) / "metrics.json", lambda tmp: Path(tmp).write_text(text))
