"""Conditioning embedders: diffusion timestep t and class label y (paper §3.2, "Conditioning")."""
import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (N,) possibly fractional timesteps -> (N, dim): [cos(t·ω), sin(t·ω)],
    ω_k = max_period^(-k / (dim/2)). An odd `dim` is padded with one zero channel."""
    if dim < 2:
        raise ValueError(f"timestep embedding dim must be >= 2, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]  # (N, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """t -> 256-dim sinusoid -> MLP (Linear, SiLU, Linear) -> (N, D)."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (N,) -> (N, D)
        return self.mlp(timestep_embedding(t, self.frequency_size))


class LabelEmbedder(nn.Module):
    """Class label -> (N, D) from a table with one extra "null" row (index = num_classes) when
    `dropout_prob > 0`; in training, labels are dropped to null with that probability so one model learns
    both p(x|y) and p(x) for classifier-free guidance (paper §3.1)."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)

    def forward(self, labels: torch.Tensor, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) labels -> (N, D). `force_drop_ids` (N,) of 0/1 replaces the random dropout (used by the
        trainer so that noise and dropout come from one seeded generator, e.g. identical across DDP ranks)."""
        if force_drop_ids is not None:
            labels = torch.where(force_drop_ids.bool(), self.num_classes, labels)
        elif self.training and self.dropout_prob > 0:  # a module flag, not data: compile-friendly
            drop = torch.rand(labels.shape, device=labels.device) < self.dropout_prob
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels)
