"""The modern block's options (RMSNorm, SwiGLU, QK-norm, 2D RoPE): shapes, known values, RoPE's invariants,
Gflops and params (closed form = fvcore = real modules), torch.compile, and the defaults leave the paper's
model untouched."""
import math

import pytest
import torch

from ditlab import DiT, build_model, count_flops, count_params, estimate_flops, estimate_params
from ditlab.cli import main
from ditlab.model import get_config
from ditlab.model.blocks import Attention, make_mlp, make_norm
from ditlab.model.modern import SwiGLU
from ditlab.model.rope import Rope2D, rope_angles, rotation_matrices

MODERN = dict(norm="rmsnorm", mlp="swiglu", qk_norm=True, rope=True)
OPTIONS = [dict(norm="rmsnorm"), dict(mlp="swiglu"), dict(qk_norm=True), dict(rope=True), MODERN]


def _noisy(model):
    for p in model.parameters():  # the paper's zero-init would make the output trivially 0
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("block", ["adaLN-Zero", "adaLN", "cross-attention", "in-context"])
def test_every_option_builds_every_block_design_with_the_right_shapes(block, opts):
    model = _noisy(build_model("DiT-Pico/4", block=block, input_size=8, depth=2, **opts))
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 500, 999]), torch.tensor([0, 4, 10])
    out = model(x, t, y)
    assert out.shape == (3, 2, 8, 8) and torch.isfinite(out).all()
    assert model.forward_with_cfg(torch.cat([x[:1], x[:1]]), t[:2], torch.tensor([3, 10]), 4.0).shape == (2, 2, 8, 8)


def test_defaults_are_the_papers_block():
    c = get_config("DiT-XL/2")
    assert (c.norm, c.mlp, c.qk_norm, c.rope) == ("layernorm", "gelu", False, False)
    a, b = build_model("DiT-Pico/4", input_size=8), build_model("DiT-Pico/4", input_size=8, rope=True, qk_norm=True)
    assert not any(isinstance(m, torch.nn.RMSNorm) for m in a.modules())
    extra = set(b.state_dict()) - set(a.state_dict())  # RoPE stores nothing; QK-norm only its two scales
    assert extra and all(k.endswith(("q_norm.weight", "k_norm.weight")) for k in extra)


def test_rmsnorm_known_value():
    x = torch.tensor([[3.0, 4.0]])  # rms = sqrt((9 + 16) / 2)
    torch.testing.assert_close(make_norm("rmsnorm", 2, False)(x), x / math.sqrt(12.5 + 1e-6))
    torch.testing.assert_close(make_norm("layernorm", 2, False)(x), torch.tensor([[-1.0, 1.0]]), atol=1e-5, rtol=0)


def test_swiglu_known_value_and_width():
    m = make_mlp("swiglu", 6, 4.0)
    assert isinstance(m, SwiGLU) and m.fc2.in_features == 16  # ⅔ of the GELU MLP's 24
    x = torch.randn(2, 5, 6)
    a, b = (x @ m.fc1.weight.T + m.fc1.bias).chunk(2, -1)
    torch.testing.assert_close(m(x), (a * torch.sigmoid(a) * b) @ m.fc2.weight.T + m.fc2.bias)


def test_qk_norm_gives_unit_rms_queries_and_keys():
    attn = Attention(32, 4, qk_norm=True)
    q = torch.randn(2, 4, 9, 8) * 10
    assert torch.allclose(attn.q_norm(q).pow(2).mean(-1), torch.ones(2, 4, 9), atol=1e-4)


def test_rope_rotation_matrices_and_angles():
    R = rotation_matrices(torch.tensor([math.pi / 2]))[0]
    torch.testing.assert_close(R, torch.tensor([[0.0, -1.0], [1.0, 0.0]]), atol=1e-7, rtol=0)
    angles = rope_angles(8, (2, 3))  # d/4 = 2 frequencies: 1 and 1/100
    assert angles.shape == (6, 4)
    torch.testing.assert_close(angles[4], torch.tensor([1.0, 0.01, 1.0, 0.01], dtype=torch.float64))  # row 1, col 1
    torch.testing.assert_close(angles[2], torch.tensor([0.0, 0.0, 2.0, 0.02], dtype=torch.float64))  # row 0, col 2


def test_rope_preserves_norms_and_makes_scores_depend_only_on_relative_position():
    rope = Rope2D(16, (4, 4))
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    q_all, k_all = rope(q.expand(1, 1, 16, 16)), rope(k.expand(1, 1, 16, 16))  # the same q and k at every position
    torch.testing.assert_close(q_all.norm(dim=-1), q.norm(dim=-1).expand(1, 1, 16), rtol=1e-5, atol=1e-5)
    scores = (q_all @ k_all.transpose(-1, -2))[0, 0]  # (16, 16): position i attends to j

    def at(r, c):
        return 4 * r + c

    # (0,0)->(1,2) and (2,1)->(3,3) have the same offset (1, 2): equal scores; another offset differs
    torch.testing.assert_close(scores[at(0, 0), at(1, 2)], scores[at(2, 1), at(3, 3)], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores[at(3, 0), at(3, 3)], scores[at(0, 0), at(0, 3)], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores[at(0, 0), at(1, 2)], scores[at(0, 0), at(2, 1)])
    # without RoPE every score would be the same number q·k
    assert scores.std() > 0.1 * scores.abs().mean()


def test_rope_leaves_in_context_tokens_unrotated():
    rope = Rope2D(8, (2, 2), extra_tokens=2)
    x = torch.randn(1, 2, 6, 8)
    out = rope(x)
    torch.testing.assert_close(out[:, :, 4:], x[:, :, 4:])
    torch.testing.assert_close(out[:, :, 0], x[:, :, 0])  # position (0, 0): angle 0
    assert not torch.allclose(out[:, :, 3], x[:, :, 3])


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="norm must be one of"):
        get_config("DiT-S/2", norm="batchnorm")
    with pytest.raises(ValueError, match="mlp must be one of"):
        get_config("DiT-S/2", mlp="relu")
    with pytest.raises(ValueError, match="qk_norm must be True or False"):
        get_config("DiT-S/2", qk_norm="yes")
    with pytest.raises(ValueError, match="divisible by 4"):
        get_config("DiT-S/2", hidden_size=36, num_heads=6, rope=True)  # head dim 6


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("block", ["adaLN-Zero", "adaLN", "cross-attention", "in-context"])
def test_gflops_and_params_closed_form_equal_fvcore_and_real_modules(block, opts):
    """Each option alone and all together (the closed form adds one term per option; depth 1 for speed)."""
    c = get_config("DiT-Mi/2", block=block, input_size=8, depth=1, **opts)
    assert estimate_flops(c) == count_flops(c)
    assert estimate_params(c) == count_params(c)


def test_each_option_is_counted():
    base = get_config("DiT-XL/2")
    D, T, L = base.hidden_size, base.num_tokens, base.depth
    flops = {k: estimate_flops(base.replace(**{k: v})) - estimate_flops(base) for k, v in MODERN.items()}
    assert flops["rope"] == L * 4 * T * D  # 2 multiply-adds per element of q and of k
    assert flops["qk_norm"] == L * 2 * T * D * 4  # an affine RMSNorm: 4 per element of q and of k
    assert flops["norm"] == -(L * 2 * T * D + T * D)  # one flop per element less than LayerNorm (mean)
    assert flops["mlp"] == L * T * (3 * D * (2 * 4 * D // 3) - 2 * D * 4 * D)  # ⅔ width, three matrices
    assert estimate_params(base.replace(qk_norm=True)) - estimate_params(base) == L * 2 * (D // base.num_heads)


def test_flops_cli_counts_the_modern_block(capsys):
    main(["flops"])
    plain = capsys.readouterr().out
    main(["flops", "--rmsnorm", "--swiglu", "--qk-norm", "--rope"])
    modern = capsys.readouterr().out
    assert "modern block" in modern
    xl = [ln for ln in modern.splitlines() if ln.startswith("DiT-XL/2") and "adaLN-Zero" in ln and " 256 " in ln][0]
    assert f"{estimate_flops(get_config('DiT-XL/2', **MODERN)) / 1e9:.2f}" in xl and xl not in plain


@pytest.mark.parametrize("block", ["adaLN-Zero", "in-context"])
def test_modern_block_compiles_without_graph_breaks(block):
    torch.compiler.reset()
    torch.manual_seed(0)
    model = _noisy(build_model("DiT-Pico/4", block=block, input_size=8, depth=2, **MODERN))
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.9]), torch.tensor([1, 9])
    fwd = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(fwd(x, t, y), model(x, t, y), rtol=1e-5, atol=1e-6)
    fwd(x, t, y).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_pos_embed_none_relies_on_rope():
    """Without any positions the model is permutation-equivariant over patches: shifting the image by whole
    patches shifts the output. RoPE alone breaks that (relative positions change at the wrap-around)."""
    x, t, y = torch.randn(1, 1, 8, 8), torch.tensor([5]), torch.tensor([1])
    for rope in (False, True):
        model = _noisy(DiT(get_config("DiT-Pico/4", input_size=8, pos_embed="none", rope=rope)))
        assert model.pos_embed is None and "pos_embed" not in model.state_dict()
        with torch.no_grad():
            same = torch.allclose(torch.roll(model(x, t, y), 4, dims=-1), model(torch.roll(x, 4, dims=-1), t, y),
                                  atol=1e-5)
        assert same != rope


def test_diffusers_conversion_refuses_the_modern_block():
    from ditlab.hub.interop import diffusers_config

    with pytest.raises(ValueError, match="modern block's options {'rope': True}"):
        diffusers_config(get_config("DiT-S/2", rope=True))
