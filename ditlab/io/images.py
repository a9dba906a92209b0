"""Pixels and image grids: uint8 <-> [-1, 1] floats, a grid of samples, its PNG."""
import math
from pathlib import Path

import torch
from einops import rearrange
from PIL import Image

from .files import atomic_write


def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.float() / 127.5 - 1.0


def float_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped)."""
    return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> uint8 (H', W', C) image grid, `nrow` images per row."""
    if nrow is not None and (not isinstance(nrow, int) or isinstance(nrow, bool) or nrow < 1):
        raise ValueError(f"nrow must be None or a positive int, got {nrow!r}")
    n = images.shape[0]
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    x = float_to_uint8(images.detach().cpu())
    x = torch.cat([x, torch.zeros(rows * nrow - n, *x.shape[1:], dtype=torch.uint8)])
    x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    return rearrange(x, "(r k) c h w -> (r h) (k w) c", k=nrow)


def save_grid(images: torch.Tensor, path, nrow: int | None = None) -> Path:
    """Write an image grid PNG atomically."""
    grid = make_grid(images, nrow).numpy()
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
