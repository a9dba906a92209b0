"""The four DiT block designs of paper §3.2 / Fig. 3, and their final layers.

Every block maps tokens (N, T, D) to (N, T, D) given the conditioning: `c` = t_emb + y_emb, (N, D), for the
adaLN designs, or `cond_tokens` = [t_emb; y_emb], (N, 2, D), for cross-attention. In-context blocks are plain
ViT blocks: t and y travel as two extra tokens in the sequence. The keyword options `norm`, `mlp`, `qk_norm` and
`rope_grid` switch on the modern block's parts (modern.py, rope.py); their defaults are the paper's block.
"""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .modern import SwiGLU, rms_norm, swiglu_hidden
from .rope import Rope2D

BLOCKS = ("adaLN-Zero", "adaLN", "cross-attention", "in-context")


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive LayerNorm's affine step: (N, T, D) * (1 + scale) + shift, with (N, D) shift/scale."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def layer_norm(dim: int, affine: bool) -> nn.LayerNorm:
    # adaLN blocks regress their own scale/shift, so their LayerNorms carry no affine parameters
    return nn.LayerNorm(dim, elementwise_affine=affine, eps=1e-6)


def make_norm(kind: str, dim: int, affine: bool) -> nn.Module:
    """The block's norm: the paper's LayerNorm, or RMSNorm (norm="rmsnorm")."""
    return rms_norm(dim, affine) if kind == "rmsnorm" else layer_norm(dim, affine)


def qk_norms(head_dim: int, on: bool) -> tuple[nn.Module, nn.Module]:
    """QK-norm: an RMSNorm with a learned scale for the queries and one for the keys, over each head's channels."""
    if not on:
        return nn.Identity(), nn.Identity()
    return rms_norm(head_dim, True), rms_norm(head_dim, True)


class Attention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention` (flash / memory-efficient kernels);
    optionally RMS-normalised queries and keys (qk_norm) and 2D rotary positions (rope_grid = the token grid)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False, rope_grid=None, extra_tokens: int = 0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.q_norm, self.k_norm = qk_norms(dim // num_heads, qk_norm)
        self.rope = Rope2D(dim // num_heads, rope_grid, extra_tokens) if rope_grid is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D) -> (N, T, D)
        q, k, v = rearrange(self.qkv(x), "n t (three h d) -> three n h t d", three=3, h=self.num_heads)
        q, k = self.rope(self.q_norm(q)), self.rope(self.k_norm(k))  # (N, H, T, D/H) each
        x = F.scaled_dot_product_attention(q, k, v)  # (N, H, T, D/H)
        return self.proj(rearrange(x, "n h t d -> n t (h d)"))


class CrossAttention(nn.Module):
    """Image tokens (queries) attend to the conditioning tokens (keys/values), (N, T, D) x (N, S, D) -> (N, T, D)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.q_norm, self.k_norm = qk_norms(dim // num_heads, qk_norm)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.q(x), "n t (h d) -> n h t d", h=self.num_heads)
        k, v = rearrange(self.kv(context), "n s (two h d) -> two n h s d", two=2, h=self.num_heads)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(x, "n h t d -> n t (h d)"))


class Mlp(nn.Module):
    """Pointwise feed-forward: Linear(D, 4D), GELU (tanh approximation), Linear(4D, D)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def make_mlp(kind: str, dim: int, mlp_ratio: float) -> nn.Module:
    """The block's feed-forward: the paper's GELU MLP of width mlp_ratio·D, or SwiGLU at ⅔ of it (mlp="swiglu")."""
    hidden = int(dim * mlp_ratio)
    return SwiGLU(dim, swiglu_hidden(hidden)) if kind == "swiglu" else Mlp(dim, hidden)


class AdaLNZeroBlock(nn.Module):
    """adaLN-Zero: regress scale γ, shift β and gates α for both sub-layers from c; the regression is
    zero-initialised, so α = 0 and the block starts as the identity (paper §3.2)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm: str = "layernorm", mlp: str = "gelu",
                 qk_norm: bool = False, rope_grid=None):
        super().__init__()
        self.norm1, self.norm2 = make_norm(norm, dim, False), make_norm(norm, dim, False)
        self.attn = Attention(dim, num_heads, qk_norm, rope_grid)
        self.mlp = make_mlp(mlp, dim, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.adaLN_modulation[-1].weight)  # the "Zero": α = 0, so the block starts as identity
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # (N, T, D), (N, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class AdaLNBlock(nn.Module):
    """adaLN: LayerNorm's scale and shift regressed from c, no gates (paper §3.2)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm: str = "layernorm", mlp: str = "gelu",
                 qk_norm: bool = False, rope_grid=None):
        super().__init__()
        self.norm1, self.norm2 = make_norm(norm, dim, False), make_norm(norm, dim, False)
        self.attn = Attention(dim, num_heads, qk_norm, rope_grid)
        self.mlp = make_mlp(mlp, dim, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 4 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, shift2, scale2 = self.adaLN_modulation(c).chunk(4, dim=-1)
        x = x + self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + self.mlp(modulate(self.norm2(x), shift2, scale2))


class CrossAttentionBlock(nn.Module):
    """Self-attention, then cross-attention over the 2-token [t; y] sequence, then the MLP (paper §3.2)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm: str = "layernorm", mlp: str = "gelu",
                 qk_norm: bool = False, rope_grid=None):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (make_norm(norm, dim, True) for _ in range(3))
        self.attn = Attention(dim, num_heads, qk_norm, rope_grid)
        self.cross_attn = CrossAttention(dim, num_heads, qk_norm)
        self.mlp = make_mlp(mlp, dim, mlp_ratio)

    def forward(self, x: torch.Tensor, cond_tokens: torch.Tensor) -> torch.Tensor:  # (N, T, D), (N, 2, D)
        x = x + self.attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), cond_tokens)
        return x + self.mlp(self.norm3(x))


class InContextBlock(nn.Module):
    """A standard pre-norm ViT block; conditioning arrives as extra tokens in x (paper §3.2)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm: str = "layernorm", mlp: str = "gelu",
                 qk_norm: bool = False, rope_grid=None):
        super().__init__()
        self.norm1, self.norm2 = make_norm(norm, dim, True), make_norm(norm, dim, True)
        self.attn = Attention(dim, num_heads, qk_norm, rope_grid, extra_tokens=2)  # t, y tokens: no position
        self.mlp = make_mlp(mlp, dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FinalLayer(nn.Module):
    """LayerNorm (adaptive when `adaptive`) then Linear(D, p*p*C_out) per token (paper §3.2, "Transformer decoder")."""

    def __init__(self, dim: int, patch_size: int, out_channels: int, adaptive: bool, norm: str = "layernorm"):
        super().__init__()
        self.adaptive = adaptive
        self.norm_final = make_norm(norm, dim, not adaptive)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        if adaptive:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:  # (N, T, D) -> (N, T, p*p*C_out)
        x = self.norm_final(x)
        if self.adaptive:
            shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
            x = modulate(x, shift, scale)
        return self.linear(x)


BLOCK_CLASSES = {"adaLN-Zero": AdaLNZeroBlock, "adaLN": AdaLNBlock,
                 "cross-attention": CrossAttentionBlock, "in-context": InContextBlock}
