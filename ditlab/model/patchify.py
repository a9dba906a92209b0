"""Patchify: an image becomes a sequence of p×p patch tokens (paper §3.2, Fig. 4).

An input of spatial size I×I with patch size p gives T = (I/p)² tokens. Halving p quadruples T and
therefore roughly quadruples the Gflops, while the parameter count barely changes (paper §3.2, Table 4).
"""
import torch
from einops import rearrange
from torch import nn


def _grid(h: int, w: int, p: int) -> tuple[int, int]:
    if not isinstance(p, int) or p < 1:
        raise ValueError(f"patch_size must be a positive int, got {p!r}")
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by patch_size={p}; "
                         f"allowed patch sizes divide both sides, e.g. {[q for q in (1, 2, 4, 8) if h % q == 0 and w % q == 0]}")
    return h // p, w // p


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, T, p*p*C), tokens in row-major (h, w) order, each patch flattened as (p, p, C)."""
    _grid(x.shape[-2], x.shape[-1], p)
    return rearrange(x, "n c (h p) (w q) -> n (h w) (p q c)", p=p, q=p)


def unpatchify(tokens: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """(N, T, p*p*C) -> (N, C, h*p, w*p); the inverse of `patchify` for a grid of h×w patches."""
    if tokens.shape[1] != h * w:
        raise ValueError(f"tokens has {tokens.shape[1]} tokens, expected h*w = {h}*{w} = {h * w}")
    return rearrange(tokens, "n (h w) (p q c) -> n c (h p) (w q)", h=h, w=w, p=p, q=p)


class PatchEmbed(nn.Module):
    """Linear projection of each p×p×C patch to D dims, written as a conv with kernel = stride = p.

    The conv is exactly `patchify(x, p) @ W.T` with W = proj.weight laid out (D, C, p, p); the conv form
    is faster and matches the official checkpoints' `x_embedder.proj` keys.
    """

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, T, D)
        return rearrange(self.proj(x), "n d h w -> n (h w) d")

    def as_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight (D, p*p*C) and bias (D,) acting on `patchify(x, p)` tokens, equal to the conv."""
        return rearrange(self.proj.weight, "d c p q -> d (p q c)"), self.proj.bias
