"""Quality vs training cost of one training recipe: the measurements behind ditlab.training.recipes.

Trains one run in segments (train(steps=N1), then resume to N2, ... : bit-identical to one run of the last length,
as the lr schedule is a function of the step alone), and after each segment samples the EMA with guidance and judges
it. Prints and appends one JSON line per evaluation to --results:

    step, cpu_s (process CPU seconds of training so far, all threads), wall_s, accuracy, fd, loss (mean of the last
    10 % of the log), n samples, the recipe.

On a shared machine wall-clock time says little; CPU seconds do: with --threads 1 the training took cpu_s
single-core seconds, and an unloaded 2-core machine takes about cpu_s / 2 (checked against a 2-thread wall-clock run,
see the README). A benchmark, not a test.

    python benchmarks/recipe_search.py --data ../shared/data/mnist.npz --image-size 32 --model DiT-Mi/4 \
        --lr 2e-3 --warmup 100 --batch-size 64 --evals 1000,2000,3000 --out runs/search/mnist32-mi4
"""
import argparse
import json
import time
from pathlib import Path

import torch

from ditlab.data import load_dataset
from ditlab.eval import evaluate, get_judge
from ditlab.eval.metrics import feature_stats
from ditlab.sampling import sample
from ditlab.training import read_log, train


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="digits")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--model", default="DiT-Mi/4")
    p.add_argument("--model-args", type=json.loads, default={})
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--objective", default="ddpm", help="ddpm (the paper) or flow (rectified flow, velocity)")
    p.add_argument("--evals", default="1000,2000,3000", help="steps at which to judge, increasing")
    p.add_argument("--samples-per-class", type=int, default=20)
    p.add_argument("--sample-steps", type=int, default=25)
    p.add_argument("--cfg-scale", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="run folder (resumed if it holds a shorter run)")
    p.add_argument("--results", default="runs/search/results.jsonl")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_dataset(args.data, split="train", image_size=args.image_size)
    real = load_dataset(args.data, split="test", image_size=args.image_size)
    judge = get_judge(args.data, image_size=args.image_size, progress=False)
    real_stats = feature_stats(judge, real.get_batch(torch.arange(len(real)))[0])
    recipe = dict(data=args.data, image_size=data.image_size, model=args.model, model_args=args.model_args,
                  batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup, ema_decay=args.ema_decay,
                  precision=args.precision, objective=args.objective, threads=args.threads)
    out = Path(args.out)
    state = out / "search_state.json"  # CPU/wall seconds spent so far, so a later invocation continues the sums
    done = json.loads(state.read_text()) if state.exists() else dict(step=0, cpu_s=0.0, wall_s=0.0)
    for n in [int(s) for s in args.evals.split(",")]:
        if n <= done["step"]:
            continue
        c0, w0 = time.process_time(), time.perf_counter()
        run = train(dataset=data, model=args.model, model_args=args.model_args, data=args.data, steps=n,
                    batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup, ema_decay=args.ema_decay,
                    precision=args.precision, objective=args.objective, out_dir=str(out), resume=done["step"] > 0, sample_every=0,
                    ckpt_every=n, log_every=25, progress=False, verdict=False)
        done = dict(step=n, cpu_s=done["cpu_s"] + time.process_time() - c0,
                    wall_s=done["wall_s"] + time.perf_counter() - w0)
        state.write_text(json.dumps(done))
        c1 = time.process_time()
        labels = [c for _ in range(args.samples_per_class) for c in range(data.num_classes)]
        s = sample(run["ema"], labels, steps=args.sample_steps, cfg_scale=args.cfg_scale, seed=0, progress=False)
        m = evaluate(judge, s.images, s.labels, real_stats)
        log = read_log(out)
        tail = log[-max(1, len(log) // 10):]
        row = dict(recipe, step=n, cpu_s=round(done["cpu_s"], 1), wall_s=round(done["wall_s"], 1),
                   accuracy=round(m["accuracy"], 4), fd=round(m["fd"], 2),
                   loss=round(sum(r["loss"] for r in tail) / len(tail), 5), n=len(labels),
                   sample_steps=args.sample_steps, cfg_scale=args.cfg_scale,
                   sample_cpu_s=round(time.process_time() - c1, 1), time=time.strftime("%Y-%m-%d %H:%M"))
        print(json.dumps(row), flush=True)
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
