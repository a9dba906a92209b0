"""Gflops in the paper's convention (§4, Table 4): one forward pass of one image, a multiply-add counts as
one flop, the VAE excluded. Two ways: `count_flops` traces a real forward pass with fvcore, and
`estimate_flops` is the closed form from a config alone (instant, for widgets)."""
import torch

from ..extras import requires
from ..model import DiT, DiTConfig, get_config


def _sdpa_flop(inputs, outputs) -> int:
    """fvcore handle for aten::scaled_dot_product_attention: Q·Kᵀ and A·V, each N·H·T·S·d multiply-adds."""
    with requires("flops"):
        from fvcore.nn.jit_handles import get_shape  # heavy optional dependency (the [flops] extra)

    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    *batch, t, d = q
    s = k[-2]
    n = 1
    for b in batch:
        n *= b
    return 2 * n * t * s * d


def count_flops(model_or_config, batch_size: int = 1) -> int:
    """Multiply-adds of one forward pass per image, counted by fvcore on a traced forward pass.

    fvcore knows linear/conv/matmul/layer_norm but skips `aten::scaled_dot_product_attention`; without the
    handle above, DiT-XL/2 would count 114.5 instead of 118.6 Gflops."""
    with requires("flops"):
        from fvcore.nn import FlopCountAnalysis  # heavy optional dependency (the [flops] extra)

    model = model_or_config if isinstance(model_or_config, torch.nn.Module) else DiT(_config(model_or_config))
    c = model.config
    x = torch.zeros(batch_size, c.in_channels, *c.hw)
    t = torch.zeros(batch_size, dtype=torch.long)
    y = torch.zeros(batch_size, dtype=torch.long)
    analysis = FlopCountAnalysis(model.eval(), (x, t, y))
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        return analysis.total() // batch_size


def estimate_flops(config) -> int:
    """Closed-form multiply-adds per image, the same terms fvcore counts (linears, conv, attention, LayerNorm)."""
    c = _config(config)
    D, T, L = c.hidden_size, c.num_tokens, c.depth
    H = int(D * c.mlp_ratio)
    ln = 4 * D  # fvcore: 4 flops per element for a LayerNorm without affine parameters, 5 with
    ln_affine = 5 * D
    patch = T * c.in_channels * c.patch_size**2 * D
    t_mlp = 256 * D + D * D
    if c.block == "in-context":
        Tb = T + 2
        block = Tb * (3 * D * D + D * D + 2 * D * H) + 2 * Tb * Tb * D + 2 * Tb * ln_affine
    else:
        block = T * (3 * D * D + D * D + 2 * D * H) + 2 * T * T * D  # qkv, proj, mlp, attention
        if c.block == "cross-attention":  # q on T tokens, k/v on 2 tokens, attention over 2 keys, out proj
            block += T * D * D + 2 * 2 * D * D + 2 * T * 2 * D + T * D * D + 3 * T * ln_affine
        else:
            block += (6 if c.block == "adaLN-Zero" else 4) * D * D + 2 * T * ln
    adaptive = c.block.startswith("adaLN")
    final = T * D * c.patch_size**2 * c.out_channels + (2 * D * D + T * ln if adaptive else T * ln_affine)
    return patch + t_mlp + L * block + final


def count_params(model_or_config) -> int:
    """Trainable parameters (the fixed sin-cos table is a buffer, not counted)."""
    if isinstance(model_or_config, torch.nn.Module):
        return sum(p.numel() for p in model_or_config.parameters() if p.requires_grad)
    with torch.device("meta"):
        return count_params(DiT(_config(model_or_config)))


def estimate_params(config) -> int:
    """Closed-form parameter count (matches `count_params`)."""
    c = _config(config)
    D, L, H = c.hidden_size, c.depth, int(c.hidden_size * c.mlp_ratio)
    attn = 4 * D * D + 4 * D
    mlp = 2 * D * H + H + D
    block = attn + mlp + {"adaLN-Zero": 6 * D * D + 6 * D, "adaLN": 4 * D * D + 4 * D,
                          "cross-attention": attn + 3 * 2 * D, "in-context": 2 * 2 * D}[c.block]
    rows = c.num_classes + int(c.has_null_class)
    embed = c.in_channels * c.patch_size**2 * D + D + (256 * D + D + D * D + D) + rows * D
    final = D * c.patch_size**2 * c.out_channels + c.patch_size**2 * c.out_channels
    final += 2 * D * D + 2 * D if c.block.startswith("adaLN") else 2 * D
    pos = c.num_tokens * D if c.pos_embed == "learned" else 0
    return embed + L * block + final + pos


def _config(config) -> DiTConfig:
    return config if isinstance(config, DiTConfig) else get_config(config)
