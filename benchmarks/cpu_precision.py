"""bf16 autocast vs fp32 training steps on this CPU: the measurements behind `precision="auto"` on CPUs
(ditlab.training.hardware.explain_precision). A benchmark that prints numbers, not a test.

Each config trains the same model (fp32 master weights, AdamW, the hybrid loss) alternately in blocks of fp32 and
bf16 steps, so a changing machine load hits both alike; the speed-up is the ratio of median process-CPU-seconds per
step (robust on a shared machine), wall-clock medians are printed beside it.

    python benchmarks/cpu_precision.py [--threads 2] [--steps 6] [--rounds 3] [--configs Nano/2@16,Mi/4@32]
"""
import argparse
import statistics
import time

import torch

from ditlab.diffusion import create_diffusion
from ditlab.model import DiT, get_config
from ditlab.training.hardware import cpu_has_native_bf16

CONFIGS = "Pico/2@16,Nano/4@16,Nano/2@16,Nano/4@32,Nano/2@32,Mi/8@16,Mi/4@16,Mi/4@28,Mi/2@16,Mi/4@32,Ti/4@32,Ti/2@32"


def time_steps(model, opt, diffusion, x, y, precision, steps):
    """-> (CPU seconds per step, wall seconds per step), medians over `steps` steps."""
    cpu, wall = [], []
    for _ in range(steps):
        t = torch.randint(0, diffusion.num_timesteps, (len(x),))
        c0, w0 = time.process_time(), time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = diffusion.training_losses(model, x, t, dict(y=y))["loss"].float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=6, help="timed steps per block")
    p.add_argument("--rounds", type=int, default=3, help="fp32/bf16 block pairs")
    p.add_argument("--configs", default=CONFIGS, help="size/patch@pixels, comma-separated")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}, batch {args.batch_size}")
    print(f"{'config':<12} {'width':>5} {'tokens':>6} {'fp32 ms/step':>12} {'bf16 ms/step':>12} "
          f"{'speed-up (CPU s)':>16} {'speed-up (wall)':>15} {'fp32 wall ms/step':>17}")
    diffusion = create_diffusion("")
    rows = []
    for spec in args.configs.split(","):
        name, px = spec.split("@")
        cfg = get_config("DiT-" + name, input_size=int(px))
        torch.manual_seed(0)
        model = DiT(cfg).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x, y = torch.randn(args.batch_size, 1, int(px), int(px)), torch.randint(0, 10, (args.batch_size,))
        for precision in ("fp32", "bf16"):  # warm-up: allocator, oneDNN kernels
            time_steps(model, opt, diffusion, x, y, precision, 2)
        got = {"fp32": ([], []), "bf16": ([], [])}
        for _ in range(args.rounds):
            for precision in ("fp32", "bf16"):
                cpu, wall = time_steps(model, opt, diffusion, x, y, precision, args.steps)
                got[precision][0].extend(cpu)
                got[precision][1].extend(wall)
        med = {k: (statistics.median(c), statistics.median(w)) for k, (c, w) in got.items()}
        row = dict(config=name, px=int(px), width=cfg.hidden_size, tokens=cfg.num_tokens,
                   fp32_cpu=med["fp32"][0], bf16_cpu=med["bf16"][0], fp32_wall=med["fp32"][1],
                   speedup_cpu=med["fp32"][0] / med["bf16"][0], speedup_wall=med["fp32"][1] / med["bf16"][1])
        rows.append(row)
        print(f"{name + '@' + px:<12} {row['width']:>5} {row['tokens']:>6} {1e3 * med['fp32'][0] / args.threads:>12.1f} "
              f"{1e3 * med['bf16'][0] / args.threads:>12.1f} {row['speedup_cpu']:>16.2f} {row['speedup_wall']:>15.2f} "
              f"{1e3 * med['fp32'][1]:>17.1f}",
              flush=True)
    print("ms/step: median CPU-seconds per step / threads (the wall time of an unloaded machine if the threads "
          "scale perfectly); wall ms/step: measured, inflated when other jobs share the cores")
    return rows


if __name__ == "__main__":
    main()
