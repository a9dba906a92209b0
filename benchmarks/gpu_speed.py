"""GPU speed benchmark: DiT training-step and sampling throughput, MFU and peak memory, in one run on one GPU.

Models DiT-S/2, DiT-B/2, DiT-XL/2 on 32×32×4 latents (256 px images, 1000 classes), side by side:
  ditlab-fp32              ditlab, fp32 weights and matmuls (TF32 off, PyTorch's default): the plain baseline
  ditlab-bf16              ditlab under bf16 autocast, eager: the fast path
  ditlab-bf16-compile      the fast path + torch.compile
  diffusers-bf16           diffusers' DiTTransformer2DModel, same config and weights (ditlab.to_diffusers), bf16
  diffusers-bf16-compile   the same + torch.compile: the peer
  ditlab-tf32              (opt-in) fp32 weights with TF32 matmuls
train = one optimizer step (forward, MSE loss, backward, AdamW, fused on CUDA); sample = one forward pass under
no_grad (one denoising step, no CFG doubling). images/s = batch / median step time (warmup not timed; compilation
happens in warmup). SDPA runs with PyTorch's default backend choice. Peak memory = torch.cuda.max_memory_allocated,
reset per case. MFU = images/s × (3 train | 1 sample) × 2 × paper Gflops (Table 4 counts a multiply-add as one
flop) / the dense bf16 matmul rate measured in the same run on an 8192³ product.
torch.compile is "regional" by default: each transformer block is compiled on its own and the identical blocks
share one graph, which keeps the cold start within the time budget; `--compile full` compiles whole models.

Usage:
    python benchmarks/gpu_speed.py --out bench.json        # the default run: < 8 min on an H100 (see --time-budget)
    python benchmarks/gpu_speed.py --models DiT-XL/2 --batch-sizes 32 64 --impls ditlab-bf16 ditlab-bf16-compile
    python benchmarks/gpu_speed.py --smoke --out smoke.json  # tiny config: proves the pipeline, < 1 min on a CPU
Without CUDA, --smoke is implied (bf16 autocast on the CPU; compiled rows use the aot_eager backend, no Inductor).
By default the fast path runs at every batch size, the baseline and the peer at the first one of each model.
Cases that would start after --time-budget seconds are listed as skipped. Prints a markdown table (README-ready).
"""
import argparse
import copy
import gc
import json
import platform
import statistics
import time
from contextlib import nullcontext
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

from ditlab.eval import estimate_flops, paper_table
from ditlab.model import DiT, get_config

MODELS = ("DiT-S/2", "DiT-B/2", "DiT-XL/2")
BATCH_SIZES = {"DiT-S/2": (64, 128, 256), "DiT-B/2": (64, 128, 256), "DiT-XL/2": (64, 128)}
IMPLS = {  # name: (library, precision, compiled)
    "ditlab-fp32": ("ditlab", "fp32", False),
    "ditlab-bf16": ("ditlab", "bf16", False),
    "ditlab-bf16-compile": ("ditlab", "bf16", True),
    "diffusers-bf16": ("diffusers", "bf16", False),
    "diffusers-bf16-compile": ("diffusers", "bf16", True),
    "ditlab-tf32": ("ditlab", "tf32", False),
}
DEFAULT_IMPLS = tuple(k for k in IMPLS if k != "ditlab-tf32")
SWEEP = ("ditlab-bf16", "ditlab-bf16-compile")  # run at every default batch size; the others at the first one
MODES = ("train", "sample")
MODE_FACTOR = {"train": 3, "sample": 1}  # a training step ≈ forward + backward (2× forward) = 3 forward passes
SMOKE = dict(depth=2, input_size=8)  # --smoke: the same widths, 2 blocks, 8×8×4 input
PRECISION_TEXT = {"fp32": "fp32, TF32 off", "tf32": "fp32 weights, TF32 matmuls", "bf16": "bf16 autocast, fp32 weights"}


def paper_gflops() -> dict:
    """Paper Table 4 Gflops of the adaLN-Zero models at 256 px, e.g. {"DiT-XL/2": 118.64, ...}."""
    return {r["model"]: r["gflops"] for r in paper_table("adaLN-Zero", 256)}


def gflops_for(name: str, config) -> tuple[float, str]:
    """(Gflops per image forward, source): the paper's value for a paper config, else `estimate_flops`."""
    table = paper_gflops()
    if name in table and config == get_config(name):
        return table[name], "paper"
    return estimate_flops(config) / 1e9, "estimate"


def mfu(images_per_s: float, mode: str, gflops: float, matmul_tflops: float) -> float:
    """Model flops utilisation: images/s × (3 | 1) × 2 × Gflops over the measured bf16 matmul flop/s."""
    return images_per_s * MODE_FACTOR[mode] * 2 * gflops * 1e9 / (matmul_tflops * 1e12)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_tflops(device: torch.device, n: int, reps: int = 10) -> float:
    """Dense bf16 (n, n) @ (n, n) throughput in TFLOPS (2n³ flops per product), median of 5 timings."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        times.append((time.perf_counter() - t0) / reps)
    return 2 * n**3 / statistics.median(times) / 1e12


def autocast(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def compile_module(module: torch.nn.Module, how: str, backend: str = "inductor"):
    """"regional": every transformer block compiled on its own (identical blocks reuse one graph, so the cold
    start costs one block); "full": the whole model as one graph. Returns what to call."""
    if how == "full":
        return torch.compile(module, dynamic=False, backend=backend)
    for block in module.blocks if isinstance(module, DiT) else module.transformer_blocks:
        block.compile(dynamic=False, backend=backend)
    return module


def settings_text(impl: str, how: str, backend: str) -> str:
    _, precision, compiled = IMPLS[impl]
    return f"{PRECISION_TEXT[precision]}; " + (f"torch.compile({how}, {backend})" if compiled else "eager")


def build(impl: str, bases: dict, device: torch.device, how: str = "regional", backend: str = "inductor"):
    """(module, forward(x, t, y) -> (N, C_out, H, W), settings text) for `impl`, with the weights of `bases`."""
    lib, _, compiled = IMPLS[impl]
    module = copy.deepcopy(bases[lib]).to(device)
    call = compile_module(module, how, backend) if compiled else module
    fn = call if lib == "ditlab" else (lambda x, t, y: call(x, t, y, return_dict=False)[0])
    return module, fn, settings_text(impl, how, backend)


def run_case(module, fn, opt, mode, batch, config, device, precision, warmup, iters) -> dict:
    """Median step time of `iters` timed steps after `warmup` untimed ones -> images/s, step ms, peak GB."""
    x = torch.randn(batch, config.in_channels, *config.hw, device=device)  # (N, C, H, W) noisy latents
    t = torch.randint(0, 1000, (batch,), device=device)
    y = torch.randint(0, config.num_classes, (batch,), device=device)
    if mode == "train":
        module.train()
        target = torch.randn(batch, config.out_channels, *config.hw, device=device)

        def step():
            with autocast(precision, device):
                out = fn(x, t, y)
            F.mse_loss(out.float(), target).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        module.eval()

        def step():
            with torch.no_grad(), autocast(precision, device):
                fn(x, t, y)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    return dict(images_per_s=batch / dt, step_ms=dt * 1e3, warmup_s=warm, peak_gb=peak)


def markdown_table(meta: dict, rows: list[dict]) -> str:
    lines = [f"{meta['device']} · torch {meta['torch']} · diffusers {meta['diffusers']} · dense bf16 matmul "
             f"{meta['matmul_tflops']:.1f} TFLOPS ({meta['matmul_n']}³) · {meta['date'][:10]}"
             f"{' · SMOKE (tiny config, numbers meaningless)' if meta['smoke'] else ''}", "",
             "| impl | model | mode | batch | images/s | MFU | peak GB | settings |",
             "|---|---|---|--:|--:|--:|--:|---|"]
    for r in rows:
        ips = f"{r['images_per_s']:.1f}" if r["images_per_s"] else r["note"]
        mf = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "–"
        peak = f"{r['peak_gb']:.1f}" if r["peak_gb"] is not None else "–"
        lines.append(f"| {r['impl']} | {r['model']} | {r['mode']} | {r['batch']} | {ips} | {mf} | {peak} | {r['settings']} |")
    lines += ["", f"MFU = images/s × (3 train, 1 sample) × 2 × Gflops (paper Table 4; `estimate_flops` for other "
              f"configs) / measured bf16 matmul rate; SDPA: "
              f"{meta['sdpa']}; optimizer: {meta['optimizer']}; median of {meta['iters']} steps after {meta['warmup']} warmup."]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help="config names (default: S/2, B/2, XL/2; smoke: S/2)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None, help="for every impl (default: see docstring)")
    p.add_argument("--impls", nargs="+", default=list(DEFAULT_IMPLS), choices=list(IMPLS))
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--iters", type=int, default=None, help="timed steps per case (default 10; smoke 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per case, compile included (default 3; smoke 1)")
    p.add_argument("--compile", default="regional", choices=["regional", "full"])
    p.add_argument("--smoke", action="store_true", help="tiny config, batch 2: checks the pipeline end to end")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--matmul-n", type=int, default=None, help="side of the bf16 matmul (default 8192; smoke 256)")
    p.add_argument("--time-budget", type=float, default=420.0, help="seconds; later cases are skipped")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    for name in args.models or ():
        try:
            get_config(name)
        except ValueError as e:
            p.error(f"--models: {e}")
    for opt in ("batch_sizes", "iters", "warmup", "matmul_n"):
        v = getattr(args, opt)
        if v is not None and min(v if isinstance(v, list) else [v]) < (0 if opt == "warmup" else 1):
            p.error(f"--{opt.replace('_', '-')} must be {'>= 0' if opt == 'warmup' else 'positive'}, got {v}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here (use --device cpu, which implies --smoke)")
    if args.warmup == 0 and any(IMPLS[i][2] for i in args.impls):
        p.error("--warmup must be >= 1 with compiled impls (compilation must not be timed)")
    return args


def run_group(impl, mode, batches, bases, config, device, args, meta, row0, start) -> list[dict]:
    """One impl in one mode at several batch sizes: a fresh copy of the weights (and optimizer), then one case
    per batch size; cases past the time budget are skipped, and an out-of-memory case is recorded as such."""
    deadline = start + args.time_budget
    settings = settings_text(impl, args.compile, meta["compile_backend"])
    rows = [dict(row0, impl=impl, mode=mode, batch=b, settings=settings, note="skipped: time budget") for b in batches]
    if time.perf_counter() > deadline:
        return rows
    precision = IMPLS[impl][1]
    torch.set_float32_matmul_precision("highest" if precision == "fp32" else "high")  # TF32 off only for fp32
    torch.compiler.reset()
    module, fn, _ = build(impl, bases, device, args.compile, meta["compile_backend"])
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=0, fused=device.type == "cuda") \
        if mode == "train" else None
    for row in rows:
        if time.perf_counter() > deadline:
            continue
        try:
            row.update(run_case(module, fn, opt, mode, row["batch"], config, device, precision, meta["warmup"],
                                meta["iters"]), note="")
            row["mfu"] = mfu(row["images_per_s"], mode, row["gflops"], meta["matmul_tflops"])
        except torch.cuda.OutOfMemoryError:
            row["note"] = "OOM"
            module.zero_grad(set_to_none=True)
        print(f"[{time.perf_counter() - start:6.1f}s] {impl:<23} {row['model']} {mode:<6} "
              f"bs {row['batch']:<4} " + (f"{row['images_per_s']:9.1f} img/s  MFU {100 * row['mfu']:5.1f}%  (warmup "
                                          f"{row['warmup_s']:.1f}s)" if row["mfu"] is not None else row["note"]), flush=True)
    del module, fn, opt
    torch.compiler.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def environment(device: torch.device, smoke: bool, args) -> dict:
    """What the table's caption and the JSON header record about this run (matmul rate measured here)."""
    import diffusers

    b = torch.backends.cuda
    meta = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)",
                torch=torch.__version__, diffusers=diffusers.__version__, date=datetime.now(timezone.utc).isoformat(),
                smoke=smoke, iters=args.iters or (2 if smoke else 10),
                warmup=args.warmup if args.warmup is not None else (1 if smoke else 3), compile=args.compile,
                compile_backend="inductor" if device.type == "cuda" else "aot_eager",  # no Inductor on a CPU smoke run
                sdpa="default backends (flash %s, mem-efficient %s, cuDNN %s, math %s)" % tuple(
                    "on" if getattr(b, f, lambda: False)() else "off"
                    for f in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "cudnn_sdp_enabled", "math_sdp_enabled")),
                optimizer=f"AdamW(lr=1e-4, weight_decay=0, fused={device.type == 'cuda'})",
                mfu_formula="images_per_s * (3 if train else 1) * 2 * gflops * 1e9 / (matmul_tflops * 1e12)",
                matmul_n=args.matmul_n or (256 if smoke else 8192))
    meta["matmul_tflops"] = measure_matmul_tflops(device, meta["matmul_n"])
    return meta


def main(argv=None) -> dict:
    start = time.perf_counter()
    args = parse_args(argv)
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    smoke = args.smoke or device.type == "cpu"
    for limit in ("recompile_limit", "cache_size_limit"):  # one static graph per batch size and grad mode
        if hasattr(torch._dynamo.config, limit):
            setattr(torch._dynamo.config, limit, 64)
    meta = environment(device, smoke, args)
    print(f"{meta['device']}: bf16 matmul {meta['matmul_tflops']:.2f} TFLOPS ({meta['matmul_n']}³)", flush=True)
    rows = []
    for name in args.models or (MODELS[:1] if smoke else MODELS):
        config = get_config(name, **(SMOKE if smoke else {}))
        gflops, source = gflops_for(name, config)
        row0 = dict(model=f"{name} (depth {config.depth})" if smoke else name, images_per_s=None, mfu=None,
                    peak_gb=None, latent="%dx%dx%d" % (*config.hw, config.in_channels), gflops=gflops,
                    gflops_source=source, step_ms=None, warmup_s=None)
        bases = {}  # one set of weights (on the CPU) for every impl; nothing is built past the time budget
        if time.perf_counter() < start + args.time_budget:
            torch.manual_seed(0)
            bases["ditlab"] = DiT(config).eval()
            if any(IMPLS[i][0] == "diffusers" for i in args.impls):
                from ditlab.hub.interop import to_diffusers

                bases["diffusers"] = to_diffusers(bases["ditlab"])
        for impl in args.impls:
            sizes = BATCH_SIZES.get(name, (64, 128))
            batches = args.batch_sizes or ([2] if smoke else sizes if impl in SWEEP else sizes[:1])
            for mode in args.modes:
                rows += run_group(impl, mode, batches, bases, config, device, args, meta, row0, start)
    meta["total_s"] = time.perf_counter() - start
    result = dict(meta, rows=rows)
    print("\n" + markdown_table(meta, rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
