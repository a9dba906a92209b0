"""The notebooks' exercise checks: a right answer passes, None is "not answered yet", a wrong one raises a hint that
does not contain the expected value; every check is used by its notebook and every notebook's check exists."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ditlab.data.imagenet import imagenet_class_index, imagenet_classes
from ditlab.diffusion import create_diffusion
from ditlab.eval import count_params, estimate_flops, paper_table
from ditlab.model import build_model, get_config, sincos_2d, unpatchify
from ditlab.model.blocks import Mlp, layer_norm
from ditlab.sampling import sample
from ditlab.teach.exercises import EXERCISES, Wrong, check

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


class _Attn(nn.Module):
    def __init__(self, dim, heads, cross=False):
        super().__init__()
        self.heads = heads
        if cross:
            self.q, self.kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None):
        split = lambda a: a.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731
        if context is None:
            q, k, v = self.qkv(x).chunk(3, -1)
        else:
            q, (k, v) = self.q(x), self.kv(context).chunk(2, -1)
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.proj(out.transpose(1, 2).flatten(2))


class CrossBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (layer_norm(dim, True) for _ in range(3))
        self.attn, self.cross_attn, self.mlp = _Attn(dim, heads), _Attn(dim, heads, cross=True), Mlp(dim, 4 * dim)

    def forward(self, x, cond):
        x = x + self.attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), cond)
        return x + self.mlp(self.norm3(x))


class InContext(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.norm2 = layer_norm(dim, True), layer_norm(dim, True)
        self.attn, self.mlp = _Attn(dim, heads), Mlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _StubBlock(nn.Module):
    """What the notebook's exercise cell holds before the student writes anything."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()

    def forward(self, *args):
        return None


def _cosine_betas(T):
    f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], 0.999)


def _log_variance(v, t):
    d = create_diffusion()
    lo = d.posterior_log_variance_clipped[t].float().view(-1, 1, 1, 1)
    hi = d.log_betas[t].float().view(-1, 1, 1, 1)
    f = (v + 1) / 2
    return f * hi + (1 - f) * lo


def _ddim_step(x, eps, ab, ab_prev, eta, z):
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(1 - ab / ab_prev)
    x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev - sigma**2) * eps + sigma * z


def _initial_share(decay, steps, warmup):
    return math.prod(min(decay, (1 + k) / (10 + k)) if warmup else decay for k in range(steps))


def _closest_patch(size, target):
    g = {p: estimate_flops(f"DiT-{size}/{p}") / 1e9 for p in (2, 4, 8)}
    return min(g, key=lambda p: abs(math.log(g[p] / target)))


def _in_context_flops(cfg):
    D, T, L, H = cfg.hidden_size, cfg.num_tokens, cfg.depth, int(cfg.hidden_size * cfg.mlp_ratio)
    Tb = T + 2
    block = Tb * (4 * D * D + 2 * D * H) + 2 * Tb * Tb * D + 2 * Tb * 5 * D
    return T * cfg.in_channels * cfg.patch_size**2 * D + 256 * D + D * D + L * block \
        + T * D * cfg.patch_size**2 * cfg.out_channels + T * 5 * D


def _tiny_model():
    torch.manual_seed(0)
    return build_model("DiT-Pico/4", input_size=8, depth=1).eval()


def _panel(label, scale):
    from ditlab.teach import explore
    return explore.sample_grid(_tiny_model(), label=int(label), n=2, cfg_scale=scale, steps=2)


def _steps_enough_answer(model, label, options, tol):
    imgs = {k: sample(model, [label] * 8, steps=k, cfg_scale=4.0, seed=0, progress=False).images
            for k in (*options, 100)}
    return next((k for k in sorted(options) if float((imgs[k] - imgs[100]).pow(2).mean().sqrt()) < tol), None)


def _pixel_latent(name, size, factor, rgb):
    """(pixel, latent) Gflops; rgb=1 is the mistake of counting grayscale pixels."""
    return tuple(estimate_flops(get_config(name, input_size=i, in_channels=c)) / 1e9
                 for i, c in ((size, rgb), (size // factor, 4)))


RMS = [0.9, 0.4, 0.15, 0.08, 0.02, 0.0]
ROWS = [dict(model="DiT-Nano/8", fd=300.0, gflops=0.001), dict(model="DiT-Nano/4", fd=90.0, gflops=0.004)]
MODEL = _tiny_model()
STEPS_CTX = dict(model=MODEL, label=1, options=(2, 5, 10), tol=0.05)

# name -> (right answer, wrong answer, context)
CASES = {
    "best_under_25": ("DiT-B/2", "DiT-L/4", {}),
    "even_digits": (type("S", (), {"labels": torch.tensor([0, 2, 4, 6, 8])})(),
                    type("S", (), {"labels": torch.tensor([0, 2, 4, 6])})(), {}),
    "tokens_512": (1024, 4096, {}),
    "unpatchify": (lambda t, p, h, w: unpatchify(t, p, h, w), lambda t, p, h, w: t.reshape(2, 3, 8, 12), {}),
    "costlier": ("DiT-B/2", "DiT-L/4", {}),
    "changed_channels": (32, 64, dict(D=64)),
    "sincos_rect": (lambda d, gh, gw: sincos_2d(d, (gh, gw)).numpy(), lambda d, gh, gw: sincos_2d(d, (gw, gh)), {}),
    "cos_sim_offsets": (float((lambda E: E[10] @ E[39] / E[10].norm() / E[39].norm())(sincos_2d(64, 8).double())),
                        0.5, {}),
    "cross_attention_block": (CrossBlock, InContext, {}),
    "in_context_block": (InContext, lambda d, h: nn.Linear(d, d), {}),
    "extra_params": (2 * 1152 * 1152 + 2 * 1152, 2 * 1152 * 1152, {}),
    "in_context_flops": (_in_context_flops, lambda cfg: estimate_flops(cfg.replace(block="adaLN-Zero")), {}),
    "xl2_params": (count_params("DiT-XL/2"), 675_000_000, {}),
    "attention_overtakes_mlp": (136, 128, {}),
    "cosine_betas": (_cosine_betas, lambda T: _cosine_betas(T) * 1.01, {}),
    "snr_crossing": (None, (100, 100), {}),  # right answer filled in below
    "log_variance": (_log_variance, lambda v, t: _log_variance(-v, t), {}),
    "ddim_eta_step": (_ddim_step, lambda x, e, a, b, eta, z: _ddim_step(x, e, a, b, 0.0, z), {}),
    "cfg_forward_images": (24, 12, {}),
    "settled_at": (3, 2, dict(rms=RMS)),
    "run_cost": (lambda cfg, b, s: (3 * estimate_flops(cfg) / 1e9 * b, 3 * estimate_flops(cfg) / 1e9 * b * s / 1e6),
                 lambda cfg, b, s: (estimate_flops(cfg) / 1e9 * b, estimate_flops(cfg) / 1e9 * b * s / 1e6), {}),
    "resume": ((7000, 777), (7777, 0), {}),
    "initial_share": (_initial_share, lambda d, s, w: d**s, {}),
    "closest_patch": (_closest_patch, lambda size, target: 2, {}),
    "corr_paper": (float(np.corrcoef(np.log10([r["gflops"] for r in paper_table("adaLN-Zero", 256)]),
                                     [r["fid50k_400k"] for r in paper_table("adaLN-Zero", 256)])[0, 1]), 0.5, {}),
    "best_in_my_run": ("DiT-Nano/4", "DiT-Nano/8", dict(rows=ROWS)),
    "steps_enough": (_steps_enough_answer(**STEPS_CTX), -1, STEPS_CTX),
    "panel": (_panel, lambda label, scale: "not a figure", {}),
    "class_ids": ((imagenet_class_index("red panda"), imagenet_classes()[980]), (0, imagenet_classes()[980]), {}),
    "network_evals": (lambda n, s: n * s["steps"] * (2 if s["cfg_scale"] != 1 else 1), lambda n, s: n * s["steps"], {}),
    "heun_step": (lambda f, x, t, t1: x + (t1 - t) * (f(x, t.expand(len(x))) + f(x + (t1 - t) * f(x, t.expand(len(x))),
                                                                                  t1.expand(len(x)))) / 2,
                  lambda f, x, t, t1: x + (t1 - t) * f(x, t.expand(len(x))), {}),
    "gvp_target": (lambda t, x0, x1: math.pi / 2 * (torch.cos(t * math.pi / 2).view(-1, 1, 1, 1) * x1
                                                    - torch.sin(t * math.pi / 2).view(-1, 1, 1, 1) * x0),
                   lambda t, x0, x1: x1 - x0, {}),
    "share_in_middle": (0.73, 0.5, {}),
    "scale_factor": (lambda z: 1 / z.std(), lambda z: 1 / z.var(), {}),
    "pixel_vs_latent": (lambda n, s, f: _pixel_latent(n, s, f, 3), lambda n, s, f: _pixel_latent(n, s, f, 1), {}),
    "latent_share": (1 / 48, 1 / 64, {}),
}


def _snr_answer():
    def first(d):
        ac = d.alphas_cumprod
        return int(torch.nonzero(ac / (1 - ac) < 1)[0])
    return tuple(first(create_diffusion(noise_schedule=s)) for s in ("linear", "cosine"))


CASES["snr_crossing"] = (_snr_answer(), (100, 100), {})


def test_every_exercise_has_a_case():
    assert set(CASES) == set(EXERCISES)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_right_answer_passes(name, capsys):
    right, _, ctx = CASES[name]
    check(name, right, **ctx)
    assert capsys.readouterr().out.startswith(f"{name}: correct!")


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_wrong_answer_gets_a_hint_not_the_answer(name):
    right, wrong, ctx = CASES[name]
    with pytest.raises(Wrong, match=rf"^{name}: not quite: ") as err:
        check(name, wrong, **ctx)
    if isinstance(right, (int, float, str, tuple)) and not isinstance(right, bool):
        values = right if isinstance(right, tuple) else (right,)
        for v in values:
            assert str(v) not in str(err.value), f"the hint reveals {v!r}"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_none_or_a_stub_is_not_answered(name, capsys):
    right, _, ctx = CASES[name]
    check(name, None, **ctx)
    assert capsys.readouterr().out == f"{name}: not answered yet\n"
    if callable(right):
        check(name, _StubBlock if isinstance(right, type) else (lambda *args: None), **ctx)
        assert capsys.readouterr().out == f"{name}: not answered yet\n"


def test_unknown_exercise():
    with pytest.raises(ValueError, match="unknown exercise"):
        check("no-such-exercise", 1)


def test_notebooks_use_every_check_and_only_their_own():
    used = {}
    for path in sorted(NB_DIR.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for name in re.findall(r"\bcheck\(\"([\w-]+)\"", "".join(cell["source"])):
                used.setdefault(name, []).append(path.stem)
    assert set(used) == set(EXERCISES), f"unused: {set(EXERCISES) - set(used)}, unknown: {set(used) - set(EXERCISES)}"
    for name, notebooks in used.items():
        assert notebooks == [EXERCISES[name][0]], f"{name} is checked in {notebooks}, registered for {EXERCISES[name][0]}"


def test_checks_do_not_hold_solutions_in_the_notebooks():
    """A check cell is one call to `check`: the expected value is computed in ditlab, not shown to the student."""
    for path in sorted(NB_DIR.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            if "exercises.check(" in src or src.startswith("check("):
                assert "expected" not in src and "assert" not in src, f"{path.name}: a check cell computes the answer"
