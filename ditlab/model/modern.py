"""The modern DiT block's parts, as options of the same config (each off by default; DiTConfig fields):

    norm="rmsnorm"   RMSNorm (Zhang & Sennrich 2019): x / rms(x), no mean subtraction  (SD3, Flux, LightningDiT)
    mlp="swiglu"     SwiGLU feed-forward (Shazeer 2020): W2·(SiLU(W1a·x) ⊙ W1b·x)          (LLaMA, LightningDiT)
    qk_norm=True     RMSNorm on each head's queries and keys before attention (Dehghani et al. 2023; SD3)
    rope=True        2D rotary position embedding inside attention (see rope.py)           (Flux, LightningDiT)

SwiGLU's hidden width is ⅔ of the GELU MLP's, so both have about the same parameters and Gflops (LLaMA's rule).
`blocks.make_norm` and `blocks.make_mlp` pick between these and the paper's LayerNorm and GELU MLP.
"""
import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


def rms_norm(dim: int, affine: bool) -> nn.RMSNorm:
    """RMSNorm over the last dim, eps 1e-6 as DiT's LayerNorms; without affine parameters in adaLN blocks."""
    return nn.RMSNorm(dim, eps=1e-6, elementwise_affine=affine)


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
