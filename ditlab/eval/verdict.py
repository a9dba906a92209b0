"""The verdict at the end of a run: a small sample grid, judged, next to the range the data allows.

Where a judge exists for the data (the built-in digits, MNIST, CIFAR-10; judge.py, trained once and cached) a run
ends by sampling `per_class` images of every class with the model's default sampler (DDIM for DDPM, Euler for flow
matching), with classifier-free guidance and without, and scores them:

    accuracy   share of samples the judge puts in the class they were conditioned on, guided and unguided, between
               chance (1 / classes) and the judge's accuracy on real test images
    FD         Fréchet distance in the judge's features to the real test images (guided samples), between real
               training images (the floor at this sample count) and noise images

"good" needs every number to clear a stated threshold: the judge itself must recognise at least JUDGE_MIN (0.85)
of the real test images (a weak judge cannot certify samples: the verdict is "uncertain" and says why, never
"good"), the guided samples at least GOOD (0.9) x the judge's real-image accuracy, and the unguided samples at
least GOOD_UNGUIDED (0.75) x it (unguided samples are less exact than guided ones, but a model that has learnt the
classes draws them recognisably without guidance too; MNIST runs of the quick recipe reach ~0.8). Otherwise the
verdict says under-trained or untrained, with a hint (train longer, the quick recipe, a larger model) read from
the loss curve and the recipe. The numbers (guided and unguided accuracy and FD, the judge's own accuracy and
the thresholds) go to the run's metrics.json.
"""
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..data import load_dataset
from ..io import atomic_write
from ..model.configs import SIZES
from ..sampling import sample, samplers_for
from .judge import get_judge
from .metrics import evaluate, gaussian_stats

JUDGED = ("digits", "mnist", "cifar10")  # dataset names with a judge
JUDGE_MIN = 0.85  # "good" needs a judge that recognises at least this share of real test images
GOOD = 0.9  # good: guided accuracy >= GOOD x the judge's accuracy on real images
GOOD_UNGUIDED = 0.75  # ... and unguided accuracy >= GOOD_UNGUIDED x it (without guidance samples are less exact)
CHANCE = 0.1  # at chance: accuracy below chance + CHANCE x (real accuracy - chance)
FALLING = 0.02  # the loss is still falling: its mean over the last fifth of the log is this much below the fifth before
PIPELINE_CHECK = 100  # runs of fewer steps check the pipeline: judged by a judge trained in seconds (get_judge smoke)


def judge_source(cfg, dataset) -> tuple[str | None, str]:
    """(what to pass to get_judge, "") when a judge exists for the run's data, else (None, why not)."""
    if cfg.vae and getattr(dataset, "vae", None) is None:  # latent runs are judged on the decoded images
        return None, "the samples are VAE latents and the dataset has no VAE to decode them (judges see pixels)"
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


def option(name: str, value, cli: bool) -> str:
    """An option as the user passes it: `--steps 600` on the command line, `steps=600` in Python."""
    if cli:
        return f"--{name.replace('_', '-')}" + ("" if value is True else f" {value}")
    return f"{name}={value!r}"


def assess(accuracy: float, chance: float, real_accuracy: float, trend: float | None, steps: int, model: str,
           short_paper_run: bool = False, cli: bool = True, unguided: float | None = None) -> tuple[str, str]:
    """(status, hint in plain words) from the guided and `unguided` accuracy, the judge's own accuracy, the loss
    trend and the recipe; `short_paper_run`: the paper's recipe on a run too short for it; `cli`: hints as flags,
    else keywords. "good" needs a trusted judge (>= JUDGE_MIN), guided >= GOOD x and unguided >= GOOD_UNGUIDED x
    the judge's real-image accuracy; unguided None (not judged) withholds it too."""
    longer = (f"train longer (the same command with {option('resume', True, cli)} {option('steps', 2 * steps, cli)})"
              if cli else f"train longer (train(..., resume=True, steps={2 * steps}))")
    weak = real_accuracy < JUDGE_MIN
    weak_judge = f"the judge recognises only {real_accuracy:.0%} of real test images (below {JUDGE_MIN:.0%})"
    bar = GOOD_UNGUIDED * real_accuracy
    lean = (None if unguided is None or unguided >= bar else
            f"unguided only {unguided:.0%} (good from {bar:.0%}): the samples lean on guidance")
    if accuracy >= GOOD * real_accuracy:
        if weak:
            return "uncertain", (f"the guided samples score like real images{'' if lean is None else ', ' + lean}, "
                                 f"but {weak_judge}, so it cannot certify them: look at samples.png")
        if unguided is None:
            return "uncertain", ("the guided samples score like real images, but the unguided ones were not judged: "
                                 "look at samples.png")
        if lean is None:
            return "good", ("good: the samples are recognised as the requested class about as often as real images, "
                            "with guidance and without" + (f"; the loss is still falling: {longer} to improve them "
                                                           "further" if _falling(trend) else ""))
        status, what = "under-trained", f"the guided samples score like real images, but {lean}"
    elif accuracy < chance + CHANCE * (real_accuracy - chance):
        status, what = "untrained", "accuracy at chance: the samples do not show the requested class"
    else:
        status, what = "under-trained", "the samples show the requested class only part of the time"
    if weak:
        what += f" ({weak_judge}: these numbers are rough)"
    return status, _advice(what, trend, steps, model, short_paper_run, cli, longer)


def _falling(trend: float | None) -> bool:
    return trend is not None and trend > FALLING


def _advice(what: str, trend: float | None, steps: int, model: str, short_paper_run: bool, cli: bool,
            longer: str) -> str:
    """What is wrong, then what to do about it, read from the recipe and the loss curve."""
    if short_paper_run:
        return (f"{what}. The paper's recipe (lr 1e-4, EMA 0.9999) is made for 100K+ steps, not {steps}: "
                f"use {option('recipe', 'quick', cli)}")
    if _falling(trend):
        return f"{what}; the loss is still falling: {longer}"
    if trend is None:
        return f"{what}; the run is too short to read the loss curve: {longer}"
    return (f"{what}; the loss has flattened: a larger model or a smaller patch than {model} learns more "
            f"(e.g. {option('model', bigger(model), cli)})")


LADDER = tuple(sorted(SIZES, key=lambda s: SIZES[s][0] * SIZES[s][1] ** 2))  # sizes by depth × width², smallest first


def bigger(model: str) -> str:
    """The next size up with the same patch ("DiT-Mi/2" -> "DiT-Ti/2"), XL with half the patch; "DiT-Mi/2" for a
    name outside the ladder."""
    size, _, patch = str(model).removeprefix("DiT-").partition("/")
    if size not in LADDER or not patch.isdigit():
        return "DiT-Mi/2"
    if size == LADDER[-1]:
        return f"DiT-{size}/{max(1, int(patch) // 2)}"
    return f"DiT-{LADDER[LADDER.index(size) + 1]}/{patch}"


def run_verdict(model, cfg, dataset, log: list[dict], per_class: int = 10, steps: int | None = None,
                cfg_scale: float | None = None, grid: str | Path | None = None, smoke: bool = False,
                short_paper_run: bool = False, cli: bool = False) -> dict:
    """Judge `model` (the EMA) -> dict for metrics.json; status "skipped" with a reason where no judge exists.

    steps / cfg_scale default to the run's sample_steps / sample_cfg; grid: where to save the guided sample grid."""
    source, why = judge_source(cfg, dataset)
    if source is None:
        return dict(status="skipped", reason=why)
    t0, mcfg = time.perf_counter(), model.config
    steps, cfg_scale = steps or cfg.sample_steps, cfg_scale if cfg_scale is not None else cfg.sample_cfg
    cfg_scale = cfg_scale if mcfg.has_null_class else 1.0
    # latent runs (cfg.vae): samples and training latents are decoded by the dataset's VAE, judged as pixels
    decode = dataset.decode if cfg.vae else None
    size, channels = (dataset.pixel_size, dataset.pixel_channels) if decode else (mcfg.input_size, mcfg.in_channels)
    judge = get_judge(source, image_size=size, channels=channels, progress=cfg.progress,
                      smoke=smoke or cfg.steps < PIPELINE_CHECK)
    real = load_dataset(source, split="test", image_size=size, channels=channels)
    real_x, real_y = real.get_batch(torch.arange(len(real)))  # (N, C, H, W), (N,)
    feats, logits = judge.embed(real_x)  # (N, feat_dim), (N, classes)
    real_stats = gaussian_stats(feats)
    real_acc = (logits.argmax(1) == real_y).float().mean().item()  # the judge's own accuracy, measured here
    labels = [c for _ in range(per_class) for c in range(mcfg.num_classes)]  # one column per class
    sampler = samplers_for(model)[0]  # ddim (DDPM) or euler (flow matching)
    judged = {}
    for scale in dict.fromkeys([cfg_scale, 1.0]):  # guided, then unguided
        out = sample(model, labels, steps=steps, sampler=sampler, cfg_scale=scale, seed=0, progress=False)
        out = replace(out, images=decode(out.images), latents=out.images) if decode else out
        judged[scale] = evaluate(judge, out.images, out.labels, real_stats)
        if grid is not None and scale == cfg_scale:
            out.save(grid, nrow=mcfg.num_classes)
    m, unguided = judged[cfg_scale], judged[1.0]
    g, n = torch.Generator().manual_seed(0), len(labels)
    x, y = dataset.get_batch(torch.randperm(len(dataset), generator=g)[:n])  # n real training images
    x = decode(x) if decode else x  # latent runs: the VAE's reconstructions, the floor a latent model can reach
    real_fd = evaluate(judge, x, y, real_stats)["fd"]
    noise_fd = evaluate(judge, torch.randn(n, *real_x.shape[1:], generator=g).clamp(-1, 1), labels, real_stats)["fd"]
    chance, trend = 1 / mcfg.num_classes, loss_trend(log)
    status, hint = assess(m["accuracy"], chance, real_acc, trend, cfg.steps, cfg.model, short_paper_run, cli,
                          unguided=unguided["accuracy"])
    return dict(status=status, accuracy=round(m["accuracy"], 4), accuracy_unguided=round(unguided["accuracy"], 4),
                fd=round(m["fd"], 2), fd_unguided=round(unguided["fd"], 2), n=n, sampler=sampler, sample_steps=steps,
                cfg_scale=cfg_scale, chance=round(chance, 4), real_accuracy=round(real_acc, 4),
                judge_min=JUDGE_MIN, judge_ok=real_acc >= JUDGE_MIN, good_accuracy=round(GOOD * real_acc, 4),
                good_accuracy_unguided=round(GOOD_UNGUIDED * real_acc, 4), judge_arch=judge.arch,
                judge_steps=judge.info.get("steps"), real_fd=round(real_fd, 2), noise_fd=round(noise_fd, 2),
                loss_trend=None if trend is None else round(trend, 4), hint=hint, judge=source,
                seconds=round(time.perf_counter() - t0, 1))


def format_verdict(v: dict) -> str:
    if v["status"] in ("skipped", "failed"):
        return f"verdict: {v['status']} ({v['reason']})"
    judge = (f"recognises {v['real_accuracy']:.2f} of real test images"
             + (f" (>= {v['judge_min']:.2f}: trusted)" if v["judge_ok"] else f" (< {v['judge_min']:.2f}: weak)"))
    return "\n".join([
        f"verdict: {v['status']} ({v['n']} samples, {v['sample_steps']} {v['sampler']} steps; judge trained on "
        f"{v['judge']}, {judge}):",
        f"  accuracy {v['accuracy']:7.3f} guided ({v['cfg_scale']:g}), {v['accuracy_unguided']:.3f} unguided   "
        f"expected: chance {v['chance']:.2f} ... real images {v['real_accuracy']:.2f}; good from "
        f"{v['good_accuracy']:.2f} guided and {v['good_accuracy_unguided']:.2f} unguided   (share of samples "
        "recognised as the requested class)",
        f"  FD       {v['fd']:7.1f} guided, {v['fd_unguided']:.1f} unguided   expected: real images {v['real_fd']:.1f} "
        f"... noise {v['noise_fd']:.1f}   (Fréchet distance in the judge's features, lower is better)",
        f"  {v['hint']}"])


def write_metrics(out_dir: Path, metrics: dict) -> None:
    """metrics.json of a run, written atomically."""
    text = json.dumps(metrics, indent=1)
    atomic_write(Path(out_dir) / "metrics.json", lambda tmp: Path(tmp).write_text(text))
