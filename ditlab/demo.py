"""`ditlab demo`: the whole kit in one command on the built-in digits, offline, a few minutes on a laptop CPU.

Trains a small DiT (adaLN-Zero, label dropout) with the quick recipe (training/recipes.py: flow matching, as in SiT),
samples a class-conditional grid with the Euler ODE sampler and classifier-free guidance, and judges the samples with
a classifier trained on the real digits (the verdict of eval/verdict.py: conditional accuracy and a Fréchet distance in its feature
space). Writes to `runs/demo/`: samples.png, loss_curve.png, metrics.json, and the training run (ema.safetensors,
log.csv, config.json, ...).
"""
import time
from pathlib import Path

import torch

from .data import load_dataset
from .teach.viz_training import loss_curve
from .training import read_log, train
from .training.advice import on_cli
from .eval.verdict import format_verdict, run_verdict, write_metrics

# The quick recipe on the digits resized to 16 px: DiT-Mi/8 (1.9 M parameters, 2x2 tokens, 0.006 Gflops), rectified
# flow (velocity), AdamW at lr 4e-3 after a 100-step warm-up, EMA 0.999, batch 64 (README "Recipes": measurements).
DEMO = dict(recipe="quick", data="digits", image_size=16, log_every=50, ckpt_every=500, sample_every=500)
SMOKE = dict(DEMO, model="DiT-Mi/8", model_args={"depth": 2, "hidden_size": 32, "num_heads": 2}, steps=10,
             batch_size=16, limit=512, log_every=5, ckpt_every=10, sample_every=0)
SAMPLING = dict(steps=25, cfg_scale=4.0, per_class=10)  # the model's sampler: euler for flow matching


def run_demo(out_dir: str | Path = "runs/demo", smoke: bool = False, steps: int | None = None,
             overwrite: bool = False, resume: bool = False) -> dict:
    """The demo; a folder holding an earlier demo is refused unless `overwrite` (it is then replaced) or `resume`
    (it is continued from its checkpoint, to `steps` if given, and judged again)."""
    out = Path(out_dir)
    options = dict(SMOKE if smoke else DEMO, out_dir=str(out), overwrite=overwrite, resume=resume)
    if steps is not None:
        options["steps"] = steps
    t0, c0 = time.perf_counter(), time.process_time()
    data = load_dataset("digits", image_size=options["image_size"], limit=options.get("limit"))
    print("[1/3] training a DiT on the built-in digits with the quick recipe ...")
    run = train(**options, dataset=data, verdict=False)
    t_train = time.perf_counter() - t0

    print("[2/3] sampling a class-conditional grid (classifier-free guidance) and judging it with a classifier "
          "trained on the real digits ...")
    log = read_log(out)
    verdict = run_verdict(run["ema"], run["train_config"], data, log, per_class=2 if smoke else SAMPLING["per_class"],
                          steps=5 if smoke else SAMPLING["steps"], cfg_scale=SAMPLING["cfg_scale"],
                          grid=out / "samples.png", smoke=smoke, cli=on_cli())

    print("[3/3] writing the loss curve and metrics ...")
    loss_curve(log).savefig(out / "loss_curve.png", dpi=120, bbox_inches="tight")
    total = time.perf_counter() - t0
    result = dict(accuracy=verdict["accuracy"], accuracy_unguided=verdict["accuracy_unguided"], fd=verdict["fd"], n_samples=verdict["n"], train_steps=run["step"],
                  train_seconds=round(t_train, 1), total_seconds=round(total, 1),
                  cpu_seconds=round(time.process_time() - c0, 1), final_loss=log[-1]["loss"],
                  params=sum(p.numel() for p in run["ema"].parameters()), model=run["train_config"].model,
                  precision=run["precision"], torch_threads=torch.get_num_threads(), verdict=verdict)
    write_metrics(out, result)
    print(format_verdict(verdict))
    print(f"\nconditional accuracy {result['accuracy']:.3f} | Fréchet distance (judge features) {result['fd']:.2f} | "
          f"{result['train_steps']} steps in {t_train:.0f} s | total {total:.0f} s")
    print(f"samples: {out / 'samples.png'}   loss curve: {out / 'loss_curve.png'}   metrics: {out / 'metrics.json'}")
    return result
