"""2D rotary position embedding (RoPE; Su et al. 2021, "RoFormer"; the axial 2D form of Flux and LightningDiT).

Instead of adding a position vector to the tokens, RoPE rotates each query and key inside attention. A head's
d channels form d/2 pairs; pair k of the token at grid position (row, col) is turned by the angle

    θ_k·row   for the first d/4 pairs,   θ_k·col   for the last d/4,   θ_k = 10000^(−k / (d/4)),

a 2×2 rotation R(φ) per (token, pair). Rotations keep lengths (|R q| = |q|), and R(φ)ᵀR(ψ) = R(ψ − φ), so the
score (R_i q)·(R_j k) = q·R(φ_j − φ_i)k depends on the two positions only through their difference: attention
sees relative positions. The rotation is one einsum with the stored matrices, which Gflops counters see as
2 multiply-adds per channel.
"""
import torch
from einops import rearrange
from torch import nn


def rope_angles(head_dim: int, grid, base: float = 10000.0) -> torch.Tensor:
    """(gh·gw, head_dim/2) rotation angles of a gh×gw token grid in row-major order."""
    gh, gw = (grid, grid) if isinstance(grid, int) else tuple(grid)
    if head_dim < 4 or head_dim % 4:
        raise ValueError(f"2D RoPE needs a head dim divisible by 4 (hidden_size / num_heads), got {head_dim}")
    freqs = base ** (-torch.arange(head_dim // 4, dtype=torch.float64) / (head_dim // 4))  # (d/4,)
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")  # (gh, gw) each
    return torch.cat([rows.reshape(-1, 1) * freqs, cols.reshape(-1, 1) * freqs], dim=1)  # (T, d/2)


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(..., K) angles φ -> (..., K, 2, 2) matrices R(φ) = [[cos φ, −sin φ], [sin φ, cos φ]], float32."""
    c, s = torch.cos(angles), torch.sin(angles)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2).float()


class Rope2D(nn.Module):
    """Rotate queries or keys (N, H, T, d) by their tokens' grid positions; `extra_tokens` more tokens at the end
    (in-context conditioning) have no position and are left as they are. The matrices are a non-persistent
    buffer: not in the state dict, rebuilt from the config."""

    def __init__(self, head_dim: int, grid, extra_tokens: int = 0):
        super().__init__()
        angles = rope_angles(head_dim, grid)
        angles = torch.cat([angles, angles.new_zeros(extra_tokens, angles.shape[1])])  # R(0) = identity
        self.register_buffer("rot", rotation_matrices(angles), persistent=False)  # (T, d/2, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = rearrange(x, "n h t (k two) -> n h t k two", two=2)  # (N, H, T, d/2, 2)
        rotated = torch.einsum("nhtkj,tkij->nhtki", pairs, self.rot.to(x.dtype))  # R·(q_2k, q_2k+1)
        return rearrange(rotated, "n h t k two -> n h t (k two)")
