"""Time the sampling playground's default request (16 images, 25 DDIM steps, CFG on) for every shipped
checkpoint on this machine. Prints a table; a benchmark, not a test.

    python benchmarks/sample_speed.py [--threads N]
"""
import argparse

import torch

from ditlab.zoo import PLAYGROUND, list_pretrained, load_pretrained, time_default_request

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=None)
p.add_argument("--repeats", type=int, default=3)
args = p.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
print(f"request: {PLAYGROUND}; torch threads: {torch.get_num_threads()}")
print(f"{'checkpoint':<12} {'tokens':>6} {'Gflops':>8} {'seconds':>8}")
for name in list_pretrained():
    m = load_pretrained(name)
    from ditlab import estimate_flops

    print(f"{name:<12} {m.config.num_tokens:>6} {estimate_flops(m.config) / 1e9:>8.3f} "
          f"{time_default_request(m, args.repeats):>8.2f}")
