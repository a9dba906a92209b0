"""The modern DiT block's parts, as options of the same config (each off by default; DiTConfig fields):

    norm="rmsnorm"   RMSNorm (Zhang & Sennrich 2019): x / rms(x), no mean subtraction  (SD3, Flux, LightningDiT)
    mlp="swiglu"     SwiGLU feed-forward (Shazeer 2020): W2·(SiLU(W1a·x) ⊙ W1b·x)          (LLaMA, LightningDiT)
    qk_norm=True     RMSNorm on each head's queries and keys before attention (Dehghani et al. 2023; SD3)
    rope=True        2D rotary position embedding inside attention (see rope.py)           (Flux, LightningDiT)

SwiGLU's hidden width is ⅔ of the GELU MLP's, so both have about the same parameters and Gflops (LLaMA's rule).
"""
import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


def make_norm(kind: str, dim: int, affine: bool) -> nn.Module:
    """LayerNorm or RMSNorm over the last dim, eps 1e-6; adaLN blocks regress their own scale/shift, so their
    norms carry no affine parameters (affine=False)."""
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=1e-6, elementwise_affine=affine)
    return nn.LayerNorm(dim, elementwise_affine=affine, eps=1e-6)


class Mlp(nn.Module):
    """Pointwise feed-forward: Linear(D, 4D), GELU (tanh approximation), Linear(4D, D)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """Gated feed-forward: fc1 makes two (N, T, H) halves a and b, then fc2(SiLU(a) ⊙ b) -> (N, T, D)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden)  # W1a and W1b in one matrix
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.fc1(x).chunk(2, dim=-1)  # (N, T, H) each
        return self.fc2(F.silu(a) * b)


def swiglu_hidden(hidden: int) -> int:
    """SwiGLU's width for a GELU MLP of width `hidden`: ⅔ of it, so params and Gflops stay about the same."""
    return max(1, int(2 * hidden / 3))


def make_mlp(kind: str, dim: int, mlp_ratio: float) -> nn.Module:
    hidden = int(dim * mlp_ratio)
    return SwiGLU(dim, swiglu_hidden(hidden)) if kind == "swiglu" else Mlp(dim, hidden)
