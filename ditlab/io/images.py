"""Pixels and image grids: uint8 <-> [-1, 1] floats, a grid of samples, its PNG or JPEG."""
import math
from pathlib import Path

import torch
from einops import rearrange
from PIL import Image

from ..checks import integer, one_of
from .files import atomic_write, check_output_file

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # by the file's extension, case-insensitive
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # the first bytes of a PNG, of a JPEG
MAX_GRID_PIXELS = 2**28  # 268 M pixels (16384²): about 1 GB of RGB, already slow to encode


def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.float() / 127.5 - 1.0


def float_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped)."""
    return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def grid_shape(n: int, image_hw: tuple[int, int], nrow: int | None = None, pad: int = 1) -> tuple[int, int]:
    """(H', W') of the grid of n images (H, W), `nrow` per row; larger than MAX_GRID_PIXELS is refused."""
    nrow = math.ceil(math.sqrt(n)) if nrow is None else integer("nrow", nrow, min=1)
    h, w = math.ceil(n / nrow) * (image_hw[0] + 2 * pad), nrow * (image_hw[1] + 2 * pad)
    if h * w > MAX_GRID_PIXELS:
        raise ValueError(f"a grid of {n} images of {image_hw[0]}x{image_hw[1]} with nrow={nrow} is {h}x{w} pixels, "
                         f"more than {MAX_GRID_PIXELS:,}: write fewer images, or the tensors instead")
    return h, w


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> uint8 (H', W', C) image grid, `nrow` images per row."""
    n = images.shape[0]
    grid_shape(n, images.shape[2:], nrow, pad)
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    x = float_to_uint8(images.detach().cpu())
    x = torch.cat([x, torch.zeros(rows * nrow - n, *x.shape[1:], dtype=torch.uint8)])
    x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    return rearrange(x, "(r k) c h w -> (r h) (k w) c", k=nrow)


def is_image_file(path) -> bool:
    """A file that starts as a PNG or a JPEG does."""
    with open(path, "rb") as f:
        head = f.read(8)
    return any(head.startswith(s) for s in SIGNATURES)


def check_image_file(path, what: str = "path", overwrite: bool = False) -> Path:
    """Refuse, before any work: an extension other than .png / .jpg / .jpeg, and an existing file that is not a
    PNG or JPEG image (a checkpoint named grid.png, say) unless `overwrite`."""
    path = check_output_file(path, what)
    one_of(f"the extension of {what} {str(path)!r}", path.suffix.lower(), FORMATS, " (PNG or JPEG)")
    if path.exists() and not overwrite and not is_image_file(path):
        raise FileExistsError(f"{what} {str(path)!r} exists and is not a PNG or JPEG image: not overwriting it "
                              "(pass overwrite=True, or --overwrite on the command line, to replace it)")
    return path


def save_grid(images: torch.Tensor, path, nrow: int | None = None, overwrite: bool = False) -> Path:
    """Write an image grid atomically, PNG or JPEG by the extension of `path` (see `check_image_file`)."""
    path = check_image_file(path, "path", overwrite)
    grid = make_grid(images, nrow).numpy()
    img, fmt = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid), FORMATS[path.suffix.lower()]
    if fmt == "JPEG" and img.mode == "RGBA":  # no alpha in a JPEG: a 4-channel (latent) grid keeps 3 channels
        img = img.convert("RGB")
    options = {"quality": 95} if fmt == "JPEG" else {}
    return atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **options))
