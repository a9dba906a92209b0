"""Gflops in the paper's convention (§4, Table 4): one forward pass of one image, a multiply-add counts as
one flop, the VAE excluded. Two ways: `count_flops` traces a real forward pass with fvcore, and
`estimate_flops` is the closed form from a config alone (instant, for widgets). Both count the modern block's
options (RMSNorm, SwiGLU, QK-norm, RoPE) too, and agree exactly."""
import torch

from ..extras import requires
from ..model import DiT, DiTConfig, get_config
from ..model.modern import swiglu_hidden


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


def _rms_norm_flop(inputs, outputs) -> int:
    """fvcore handle for aten::rms_norm, in the convention of its LayerNorm handle (4 flops per element, 5 with
    an affine weight and bias) minus the mean subtraction: 3 per element, 4 with a weight."""
    with requires("flops"):
        from fvcore.nn.jit_handles import get_shape  # heavy optional dependency (the [flops] extra)

    n = 1
    for s in get_shape(inputs[0]):
        n *= s
    return n * (4 if get_shape(inputs[2]) is not None else 3)


def count_flops(model_or_config, batch_size: int = 1) -> int:
    """Multiply-adds of one forward pass per image, counted by fvcore on a traced forward pass.

    fvcore knows linear/conv/matmul/einsum/layer_norm but skips `aten::scaled_dot_product_attention` and
    `aten::rms_norm`; without the SDPA handle above, DiT-XL/2 would count 114.5 instead of 118.6 Gflops."""
    with requires("flops"):
        from fvcore.nn import FlopCountAnalysis  # heavy optional dependency (the [flops] extra)

    model = model_or_config if isinstance(model_or_config, torch.nn.Module) else DiT(_config(model_or_config))
    c = model.config
    x = torch.zeros(batch_size, c.in_channels, *c.hw)
    t = torch.zeros(batch_size, dtype=torch.long)
    y = torch.zeros(batch_size, dtype=torch.long)
    analysis = FlopCountAnalysis(model.eval(), (x, t, y))
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop)
    analysis.set_op_handle("aten::rms_norm", _rms_norm_flop)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        return int(analysis.total()) // batch_size  # the einsum handle counts in floats


def _norm(c: DiTConfig, affine: bool) -> int:
    """Flops per token of one norm over D channels (fvcore's convention, see `_rms_norm_flop`)."""
    return c.hidden_size * ((4 if affine else 3) if c.norm == "rmsnorm" else (5 if affine else 4))


def _mlp_width(c: DiTConfig) -> int:
    hidden = int(c.hidden_size * c.mlp_ratio)
    return swiglu_hidden(hidden) if c.mlp == "swiglu" else hidden


FLOPS_PARTS = ("patch embedding", "timestep embedding", "attention projections", "attention scores", "MLP",
               "adaLN", "LayerNorm", "final layer")


def flops_breakdown(config) -> dict[str, int]:
    """Closed-form multiply-adds per image, per component (keys `FLOPS_PARTS`); they sum to `estimate_flops`.

    Per block of width D on T tokens (MLP width H = 4D): attention projections T·4D² (qkv, out), attention scores
    2T²D (QKᵀ and A·V), MLP 2TDH, adaLN 6D² (4D² for adaLN; once per image, on c), LayerNorm 4 or 5 flops per
    element (fvcore's count, without/with affine). Outside the blocks: the patch embedding T·p²C·D, the timestep
    MLP 256D + D² (the label embedding is a lookup: 0), the final layer T·D·p²C_out (+ its adaLN 2D²).
    The modern block's options land in the same parts: SwiGLU in "MLP" (3 matrices of ⅔ width), RMSNorm (one flop
    per element less) and QK-norm (4 per element of q and k) in "LayerNorm", RoPE's rotation (2 multiply-adds per
    element of q and k) in "attention scores"."""
    c = _config(config)
    D, T, L, p2 = c.hidden_size, c.num_tokens, c.depth, c.patch_size**2
    H = _mlp_width(c)
    ln, ln_affine = _norm(c, False), _norm(c, True)  # per token
    Tb = T + 2 if c.block == "in-context" else T  # in-context blocks also carry the t and y tokens
    proj, scores = Tb * 4 * D * D, 2 * Tb * Tb * D
    qk = 2 * Tb * D * 4 if c.qk_norm else 0  # an affine RMSNorm on q and on k (Tb × D elements each)
    scores += 2 * 2 * Tb * D if c.rope else 0
    if c.block == "cross-attention":  # q on T tokens, k/v on the 2 conditioning tokens, out projection
        proj += T * D * D + 2 * 2 * D * D + T * D * D
        scores += 2 * T * 2 * D
        qk += (T + 2) * D * 4 if c.qk_norm else 0
    adaptive = c.block.startswith("adaLN")
    ada = {"adaLN-Zero": 6 * D * D, "adaLN": 4 * D * D}.get(c.block, 0)
    norms = {"cross-attention": 3 * T * ln_affine, "in-context": 2 * Tb * ln_affine}.get(c.block, 2 * T * ln)
    return {
        "patch embedding": T * c.in_channels * p2 * D,
        "timestep embedding": 256 * D + D * D,
        "attention projections": L * proj,
        "attention scores": L * scores,
        "MLP": L * Tb * (3 if c.mlp == "swiglu" else 2) * D * H,
        "adaLN": L * ada + (2 * D * D if adaptive else 0),
        "LayerNorm": L * (norms + qk) + T * (ln if adaptive else ln_affine),
        "final layer": T * D * p2 * c.out_channels,
    }


def estimate_flops(config) -> int:
    """Closed-form multiply-adds per image, the same terms fvcore counts (linears, conv, attention, norms, the
    RoPE einsum), for every block design and every modern-block option: the sum of `flops_breakdown`."""
    return sum(flops_breakdown(config).values())


def count_params(model_or_config) -> int:
    """Trainable parameters (the fixed sin-cos table is a buffer, not counted)."""
    if isinstance(model_or_config, torch.nn.Module):
        return sum(p.numel() for p in model_or_config.parameters() if p.requires_grad)
    with torch.device("meta"):
        return count_params(DiT(_config(model_or_config)))


def estimate_params(config) -> int:
    """Closed-form parameter count (matches `count_params`)."""
    c = _config(config)
    D, L, H = c.hidden_size, c.depth, _mlp_width(c)
    norm_affine = D if c.norm == "rmsnorm" else 2 * D  # RMSNorm: a scale; LayerNorm: scale and bias
    qk = 2 * (D // c.num_heads) if c.qk_norm else 0  # one RMSNorm scale for q, one for k, per attention
    attn = 4 * D * D + 4 * D + qk
    mlp = (3 * D * H + 2 * H + D) if c.mlp == "swiglu" else (2 * D * H + H + D)  # swiglu: fc1 D->2H, fc2 H->D
    block = attn + mlp + {"adaLN-Zero": 6 * D * D + 6 * D, "adaLN": 4 * D * D + 4 * D,
                          "cross-attention": attn + 3 * norm_affine, "in-context": 2 * norm_affine}[c.block]
    rows = c.num_classes + int(c.has_null_class)
    embed = c.in_channels * c.patch_size**2 * D + D + (256 * D + D + D * D + D) + rows * D
    final = D * c.patch_size**2 * c.out_channels + c.patch_size**2 * c.out_channels
    final += 2 * D * D + 2 * D if c.block.startswith("adaLN") else norm_affine
    pos = c.num_tokens * D if c.pos_embed == "learned" else 0
    return embed + L * block + final + pos


def _config(config) -> DiTConfig:
    return config if isinstance(config, DiTConfig) else get_config(config)
