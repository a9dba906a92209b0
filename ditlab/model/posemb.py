"""Fixed 2D sin-cos positional embeddings (paper §3.2, "frequency-based", as in ViT/MAE).

Half of the D channels encode the column (w) coordinate and half the row (h) coordinate, each with the
1D Transformer embedding [sin(pos·ω_k), cos(pos·ω_k)], ω_k = 1 / 10000^(k / (D/4)), k = 0 … D/4 − 1.
"""
import numpy as np
import torch


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """(M,) positions -> (M, dim): first half sin, second half cos. `dim` must be even."""
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even int >= 2, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))  # (dim/2,)
    angles = np.asarray(pos, dtype=np.float64).reshape(-1)[:, None] * omega[None]  # (M, dim/2)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim: int, grid_size) -> torch.Tensor:
    """(gh*gw, dim) float32 table for a gh×gw token grid in row-major order; `grid_size` is an int or (gh, gw)."""
    gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if dim < 4 or dim % 4:
        raise ValueError(f"2D sin-cos embedding needs dim divisible by 4 (and >= 4), got dim={dim}")
    if gh < 1 or gw < 1:
        raise ValueError(f"grid_size must be positive, got {grid_size}")
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")  # (gh, gw) each
    emb = np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)  # (gh*gw, dim)
    return torch.from_numpy(emb).float()
