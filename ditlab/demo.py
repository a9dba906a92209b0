"""`ditlab demo`: the whole kit in one command on the built-in digits, offline, ≤ 10 minutes on a laptop CPU.

Trains a small DiT (adaLN-Zero, learned Σ, label dropout), samples a class-conditional grid with DDIM and
classifier-free guidance, and judges the samples with a classifier trained on the real digits
(conditional accuracy and a Fréchet distance in its feature space). Writes to `runs/demo/`:
samples.png, loss_curve.png, metrics.json, and the training run (ema.safetensors, log.csv, ...).
"""
import json
import time
from pathlib import Path

import torch

from .data import load_dataset
from .eval import evaluate, get_judge
from .sampling import sample
from .teach.viz_training import loss_curve
from .training import train

# The recipe: a 0.3M-parameter DiT at patch 2 on the digits resized to 16 px (64 tokens, 0.02 Gflops), so that
# a laptop CPU can take thousands of steps in minutes; lr above the paper's 1e-4 because the run is short.
DEMO = dict(model="DiT-Nano/2", data="digits", image_size=16, steps=4000, batch_size=64, lr=2e-3, ema_decay=0.999,
            log_every=50, ckpt_every=1000, sample_every=1000)
SMOKE = dict(DEMO, model_args={"depth": 2, "hidden_size": 32, "num_heads": 2}, steps=10, batch_size=16,
             limit=512, log_every=5, ckpt_every=10, sample_every=0)
SAMPLING = dict(steps=50, sampler="ddim", cfg_scale=4.0, per_class=10)


def run_demo(out_dir: str | Path = "runs/demo", smoke: bool = False, steps: int | None = None,
             overwrite: bool = False) -> dict:
    """The demo; a folder holding an earlier demo is refused unless `overwrite` (it is then replaced)."""
    out = Path(out_dir)
    recipe = dict(SMOKE if smoke else DEMO, out_dir=str(out), overwrite=overwrite)
    if steps is not None:
        recipe["steps"] = steps
    t0 = time.perf_counter()
    print(f"[1/4] training {recipe['model']} on the built-in digits for {recipe['steps']} steps ...")
    run = train(**recipe)
    t_train = time.perf_counter() - t0

    print("[2/4] sampling a class-conditional grid (DDIM, classifier-free guidance) ...")
    per = 2 if smoke else SAMPLING["per_class"]
    n = run["config"].num_classes
    labels = [c for _ in range(per) for c in range(n)]  # one column per class
    samples = sample(run["ema"], labels, steps=5 if smoke else SAMPLING["steps"], sampler=SAMPLING["sampler"],
                     cfg_scale=SAMPLING["cfg_scale"], seed=0)
    samples.save(out / "samples.png", nrow=n)

    print("[3/4] judging the samples with a classifier trained on the real digits ...")
    size = recipe["image_size"]
    real = load_dataset("digits", split="test", image_size=size)
    judge = get_judge("digits", image_size=size, smoke=smoke)
    metrics = evaluate(judge, samples.images, samples.labels, real.get_batch(torch.arange(len(real)))[0])

    print("[4/4] writing the loss curve and metrics ...")
    loss_curve(run["log"]).savefig(out / "loss_curve.png", dpi=120, bbox_inches="tight")
    total = time.perf_counter() - t0
    result = dict(accuracy=metrics["accuracy"], fd=metrics["fd"], n_samples=len(labels), train_steps=run["step"],
                  train_seconds=round(t_train, 1), total_seconds=round(total, 1), final_loss=run["log"][-1]["loss"],
                  params=sum(p.numel() for p in run["ema"].parameters()), model=recipe["model"],
                  torch_threads=torch.get_num_threads())
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    print(f"\nconditional accuracy {result['accuracy']:.3f} | Fréchet distance (judge features) {result['fd']:.2f} | "
          f"{result['train_steps']} steps in {t_train:.0f} s | total {total:.0f} s")
    print(f"samples: {out / 'samples.png'}   loss curve: {out / 'loss_curve.png'}   metrics: {out / 'metrics.json'}")
    return result
