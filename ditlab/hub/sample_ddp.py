"""Sample many images across processes into one ADM-style `.npz` (the input of the standard FID suite of
Dhariwal & Nichol's guided-diffusion `evaluations/evaluator.py`, which the paper's FID-50K numbers use).

    torchrun --nproc_per_node 8 -m ditlab.hub.sample_ddp --ckpt DiT-XL-2-256x256 --num-samples 50000 \
        --out samples.npz                     # the paper's FID setting: 250 DDPM steps, cfg 1.5
    python -m ditlab.hub.sample_ddp --ckpt runs/demo --num-samples 1000 --steps 50 --sampler ddim --out s.npz

Each rank samples its share (random labels; batch b of rank r uses seed `seed + b*world + r`, so ranks
never repeat each other), writes it to a shard, and rank 0 joins the shards into `--out` atomically:
`arr_0` uint8 (N, H, W, 3) images, `arr_1` int64 (N,) labels. nccl on GPUs, gloo on CPUs.
"""
import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..checkpoint import RELEASED
from ..checks import integer, refuse
from ..io import atomic_write, float_to_uint8
from ..sampling import Guidance, sample
from .pretrained import load_released, load_sd_vae


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ditlab.hub.sample_ddp", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="released name (DiT-XL-2-256x256), ditlab run/file or official .pt")
    p.add_argument("--num-samples", type=int, default=50_000)
    p.add_argument("--per-proc-batch-size", type=int, default=32)
    p.add_argument("--out", default="samples.npz")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--cfg-scale", type=float, default=1.5)
    p.add_argument("--guidance-channels", default="auto",
                   help="'auto' (3 for 4-channel latent models as in the official code, else all), 'all' or an int")
    p.add_argument("--vae", default="auto", help="'ema', 'mse', a diffusers VAE folder, 'none' (pixel models) "
                                                 "or 'auto' (ema for 4-channel models, else none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="where released checkpoints are cached")
    return p


def _check(args) -> None:
    integer("--num-samples", args.num_samples, min=1)
    integer("--per-proc-batch-size", args.per_proc_batch_size, min=1)
    integer("--steps", args.steps, min=1, max=1000)
    refuse("", [(not args.out.endswith(".npz"), f"--out must end with .npz, got {args.out!r}")])


def _load(args, device):
    model = load_released(args.ckpt, cache_dir=args.cache_dir, device=device) if args.ckpt in RELEASED \
        else load_released(Path(args.ckpt), device=device)
    C = model.config.in_channels
    kind = ("ema" if C == 4 else "none") if args.vae == "auto" else args.vae
    vae = None if kind == "none" else load_sd_vae(kind, device=device)
    refuse("", [(vae is None and C not in (1, 3), f"a {C}-channel model needs --vae to decode its latents into RGB "
                                                   "images")])
    g = args.guidance_channels
    g = (3 if C == 4 else None) if g == "auto" else None if g == "all" else int(g)
    return model, vae, g


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W, 3); grayscale is repeated to RGB."""
    x = float_to_uint8(images)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def _savez(path, **arrays):
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a temporary name
        np.savez(f, **arrays)


def main(argv=None) -> Path:
    args = build_parser().parse_args(argv)
    _check(args)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    if world > 1:
        dist.init_process_group(backend)
    try:
        model, vae, guidance = _load(args, device)
        n = args.num_samples // world + (rank < args.num_samples % world)  # this rank's share
        images, labels = [], []
        starts = range(0, n, args.per_proc_batch_size)
        for b, start in enumerate(tqdm(starts, desc="sampling", disable=rank != 0)):
            k = min(args.per_proc_batch_size, n - start)
            seed = args.seed + b * world + rank
            y = torch.randint(0, model.config.num_classes, (k,), generator=torch.Generator().manual_seed(seed + 10**9))
            out = sample(model, y.tolist(), steps=args.steps, sampler=args.sampler, seed=seed,
                         cfg_scale=Guidance(args.cfg_scale, channels=guidance), vae=vae, device=device, progress=False)
            images.append(to_uint8_nhwc(out.images))
            labels.append(out.labels.numpy().astype(np.int64))
        out_path = Path(args.out)
        shards = out_path.with_name(f".{out_path.name}.shards")
        shards.mkdir(parents=True, exist_ok=True)
        atomic_write(shards / f"rank{rank}.npz", lambda tmp: _savez(tmp, images=np.concatenate(images),
                                                                     labels=np.concatenate(labels)))
        if world > 1:
            dist.barrier()
        if rank == 0:
            parts = [np.load(shards / f"rank{r}.npz") for r in range(world)]
            arr_0 = np.concatenate([p["images"] for p in parts])
            arr_1 = np.concatenate([p["labels"] for p in parts])
            atomic_write(out_path, lambda tmp: _savez(tmp, arr_0=arr_0, arr_1=arr_1))
            shutil.rmtree(shards, ignore_errors=True)
            print(f"wrote {out_path}: arr_0 {arr_0.shape} {arr_0.dtype}, arr_1 {arr_1.shape}")
        if world > 1:
            dist.barrier()
        return out_path
    finally:
        if world > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ValueError, FileNotFoundError, ConnectionError) as e:
        sys.exit(f"ditlab.hub.sample_ddp: error: {e}")
