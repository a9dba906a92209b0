"""The checks of the pieces of notebooks 06–07: a DDPM and a DDIM step (06), an Euler flow-matching step (07); the
conventions: pieces.py. The steps take the network's output and the schedule as arguments, so the checks call them
with their own probes: ditlab's `p_mean_variance` / `ddim_sample` / Euler ODE sampler on a respaced 10-step schedule,
then the official code's outputs (official_dit: `pmv_*` on 1000 steps, `respace_250_pmv_*`, `ddim_eta0`; official_sit:
`ode_Linear_velocity_euler`). A mismatch is named by the mistaken step it equals (ᾱ of the wrong index, a missing
square root, v as the interpolation weight, noise at the last step, ε̂ and x̂_0 swapped, dt's sign, t not per sample,
v taken at t_next), never by the expected numbers."""
import json

import torch
from safetensors.torch import load_file

from ..diffusion import create_diffusion, create_flow, ode_sample
from ..diffusion.gaussian import GaussianDiffusion
from ..io import fixture_path
from ..model import DiT, DiTConfig
from .exercise_tools import Wrong, randn
from .piece_tools import expect_close, official_ran, piece

K = 10  # the probes' respaced schedule: 10 of the 1000 steps (as create_diffusion("10"))
STEPS = (K // 2, K - 1, 1, 0)  # a middle step first (both neighbours exist), the first, the last two


def _require(ok: bool, hint: str) -> None:
    if not ok:
        raise Wrong(hint)


def _schedule(alpha_bar: torch.Tensor) -> GaussianDiffusion:
    """ditlab's diffusion whose ᾱ is `alpha_bar` (K,): β_i = 1 − ᾱ_i/ᾱ_{i−1} (IDDPM §4, respacing)."""
    ab = alpha_bar.double()  # (K,)
    return GaussianDiffusion((1 - ab / torch.cat([ab.new_ones(1), ab[:-1]])).numpy())


def ditlab_ddpm_step(eps, v, x, i, alpha_bar, z):
    """ditlab's DDPM step (`p_mean_variance`, learned Σ, then μ + σ·z as `p_sample`) in my_ddpm_step's form."""
    t = torch.full((len(x),), int(i))
    out = _schedule(alpha_bar).p_mean_variance(None, x, t, model_output=torch.cat([eps, v], dim=1))
    return out["mean"] + (i > 0) * torch.exp(0.5 * out["log_variance"]) * z, out["pred_xstart"]


def ditlab_ddim_step(eps, x, i, alpha_bar):
    """ditlab's DDIM step (`ddim_sample`, η = 0) in my_ddim_step's form."""
    model = lambda x_, t_: torch.cat([eps, torch.zeros_like(eps)], dim=1)  # noqa: E731  the given output, Σ unused
    out = _schedule(alpha_bar).ddim_sample(model, x, torch.full((len(x),), int(i)))
    return out["sample"], out["pred_xstart"]


def ditlab_euler_step(velocity, x, t, t_next):
    """ditlab's Euler ODE sampler (`ode_sample`, method "euler") for one step, in my_euler_step's form."""
    grid = torch.stack([torch.as_tensor(t), torch.as_tensor(t_next)]).float()
    return ode_sample(create_flow("linear", "velocity"), lambda x_, t_: velocity(x_, t_), x, grid, "euler")


# ---- the mistaken steps the checks recognise ----------------------------------------------------------------
def _ab(alpha_bar, i, wrap=False):
    """ᾱ at index i as a float64 scalar; ᾱ_{−1} = 1, or the last entry when `wrap` (Python's alpha_bar[-1])."""
    return alpha_bar[i].double() if i >= 0 or wrap else torch.tensor(1.0, dtype=torch.float64)


def _x0(eps, x, ab, sqrt=(True, True)):
    """x̂_0 = (x − √(1−ᾱ) ε̂)/√ᾱ, optionally without one of the two square roots."""
    a, b = (1 - ab).sqrt() if sqrt[0] else 1 - ab, ab.sqrt() if sqrt[1] else ab
    return ((x - a * eps) / b).float()


def _by_hand(eps, v, x, i, alpha_bar, z, prev=-1, wrap=False, sqrt_mean=(True, True), frac_v=False, std=True,
             last_noise=False):
    """The DDPM step with the learned Σ written out, with the mistakes its keyword arguments name."""
    ab, ab_prev = _ab(alpha_bar, i), _ab(alpha_bar, i + prev, wrap)
    beta = 1 - ab / ab_prev
    x0 = _x0(eps, x, ab)
    c0 = beta * (ab_prev.sqrt() if sqrt_mean[0] else ab_prev) / (1 - ab)
    ct = (1 - ab_prev) * ((1 - beta).sqrt() if sqrt_mean[1] else 1 - beta) / (1 - ab)
    mean = c0.float() * x0 + ct.float() * x
    j = max(i, 1)  # log β̃ clipped at i = 0 (β̃_0 = 0)
    ab_j, ab_jp = _ab(alpha_bar, j), _ab(alpha_bar, j - 1)
    post = (1 - ab_j / ab_jp) * (1 - ab_jp) / (1 - ab_j)
    frac = v if frac_v else (v + 1) / 2
    log_var = frac * beta.log().float() + (1 - frac) * post.log().float()
    noise = (i > 0 or last_noise) * torch.exp((0.5 if std else 1.0) * log_var) * z
    return mean + noise, x0


DDPM_MISTAKES = [  # (keyword arguments of _by_hand, the hint)
    (dict(wrap=True), "at i = 0 your ᾱ_{i−1} is the last entry of alpha_bar (Python's alpha_bar[-1] wraps around): "
                      "before the first kept step ᾱ_{−1} = 1"),
    (dict(prev=+1), "your ᾱ_{i−1} is ᾱ of the step after i: sampling runs from i = K−1 down to 0, the previous "
                    "step of the reverse process is index i − 1"),
    (dict(sqrt_mean=(False, True)), "a square root is missing in μ̃'s coefficient of x̂_0 (the one with ᾱ_{i−1})"),
    (dict(sqrt_mean=(True, False)), "a square root is missing in μ̃'s coefficient of x_i (the one with α_i = 1 − β_i)"),
    (dict(frac_v=True), "your learned variance interpolates with v itself: the network's v lies in [−1, 1], the "
                        "weight of log β_i is (v + 1)/2 (IDDPM eq. 15)"),
    (dict(std=False), "the noise is scaled by the variance Σ: scale z by the standard deviation, exp(½ log Σ)"),
    (dict(last_noise=True), "you add noise at the last step (i = 0): its output is the image, x_{−1} = μ_θ"),
]
X0_HINT = "x̂_0 misses a square root: x_i = √ᾱ_i x_0 + √(1 − ᾱ_i) ε"


def _pair(out, what):  # the steps return (x_{i−1}, x̂_0)
    _require(isinstance(out, (tuple, list)) and len(out) == 2,
             f"{what} must return a pair (x at index i − 1, x̂_0), got {type(out).__name__}")
    return out


def _check_x0(got, eps, x, i, alpha_bar, what):
    """x̂_0 compared in x_i's units (× √ᾱ_i): 1/√ᾱ magnifies float32 rounding up to ~157× at t = 999."""
    ab = _ab(alpha_bar, i)
    want, scale = _x0(eps, x, ab), ab.sqrt().float()
    if isinstance(got, torch.Tensor) and got.shape == want.shape and not torch.allclose(got * scale, want * scale,
                                                                                          atol=1e-4):
        for k in (i - 1, i + 1):
            if 0 <= k < len(alpha_bar):
                _require(not torch.allclose(got, _x0(eps, x, _ab(alpha_bar, k)), atol=1e-4, rtol=1e-4),
                         f"{what}, x̂_0 uses ᾱ of step {k}, not of step i: x_i's noise level is ᾱ_i = alpha_bar[i]")
        for sqrt in [(False, True), (True, False)]:
            _require(not torch.allclose(got, _x0(eps, x, ab, sqrt), atol=1e-4, rtol=1e-4), f"{what}, {X0_HINT}")
    expect_close(got * scale if isinstance(got, torch.Tensor) else got, want * scale, f"{what}, x̂_0 (× √ᾱ_i)",
                 atol=1e-4)


def _check_ddpm_at(mine, eps, v, x, i, alpha_bar, z, want, what):
    got, x0 = _pair(mine(eps, v, x, i, alpha_bar, z), "my_ddpm_step")
    _check_x0(x0, eps, x, i, alpha_bar, what)
    if isinstance(got, torch.Tensor) and got.shape == want.shape and not torch.allclose(got, want, atol=1e-4):
        _require(not torch.allclose(got, x, atol=1e-4), f"{what}, your step returns x_i unchanged: your ᾱ_{{i−1}} is "
                                                         "ᾱ_i (so β_i = 0); use the previous kept step's, index i − 1")
        for kwargs, hint in DDPM_MISTAKES:
            if 0 <= i + kwargs.get("prev", -1) + 1 <= len(alpha_bar):  # ᾱ_{i+1} exists below the first step
                wrong, _ = _by_hand(eps, v, x, i, alpha_bar, z, **kwargs)  # NaN where a wrapped ᾱ makes β_0 < 0
                _require(not torch.allclose(got, wrong, atol=1e-4, rtol=1e-4, equal_nan=True), f"{what}, {hint}")
    expect_close(got, want, f"{what}, x_{{i−1}}", atol=1e-4)


def _probes(seed=0):
    """A respaced K-step ᾱ (float64), a network output ε̂, v (v in [−1, 1]) and x_i, z: (3, 2, 4, 5) each."""
    alpha_bar = create_diffusion(str(K)).alphas_cumprod
    eps, x, z = (randn(3, 2, 4, 5, seed=seed + k) for k in range(3))
    return alpha_bar, eps, torch.rand(3, 2, 4, 5, generator=torch.Generator().manual_seed(seed)) * 2 - 1, x, z


def _official_dit():
    """(the official tiny model, its reference outputs), or None without fixtures."""
    try:
        config = json.loads(fixture_path("official_dit/config.json").read_text())
        state = torch.load(fixture_path("official_dit/DiT-tiny-release.pt"), map_location="cpu", weights_only=True)
        reference = load_file(fixture_path("official_dit/reference.safetensors"))
    except FileNotFoundError:
        return None
    model = DiT(DiTConfig(**config)).eval()
    model.load_state_dict(state)
    return model, reference


def _official_outputs(model, reference, prefix):
    """[(ε̂, v, x, i, ᾱ) per sample] of the official inputs: the 1000-step schedule ("pmv_") or 250 steps."""
    if prefix == "pmv_":
        alpha_bar, index, timesteps = create_diffusion().alphas_cumprod, reference["t"], reference["t"]
    else:  # ᾱ from the official code's respaced β, the model sees the original timesteps
        alpha_bar, index = torch.cumprod(1 - reference["respace_250_betas"], 0), reference["respace_250_index"]
        timesteps = reference["respace_250_timesteps"][index]
    x = reference["q_sample"]
    with torch.no_grad():
        eps, v = model(x, timesteps, reference["y"]).split(x.shape[1], dim=1)
    return [(eps[n:n + 1], v[n:n + 1], x[n:n + 1], int(index[n]), alpha_bar) for n in range(len(x))]


def _ddpm_official(mine, model, reference):
    for prefix in ("pmv_", "respace_250_pmv_"):
        what = "on the official code's inputs" + (" (250 respaced steps)" if prefix != "pmv_" else "")
        for n, (eps, v, x, i, alpha_bar) in enumerate(_official_outputs(model, reference, prefix)):
            mean = reference[prefix + "mean"][n:n + 1]
            std = torch.exp(0.5 * reference[prefix + "log_variance"][n:n + 1])
            got, _ = _pair(mine(eps, v, x, i, alpha_bar, torch.zeros_like(x)), "my_ddpm_step")
            expect_close(got, mean, f"{what} at i = {i}, x_{{i−1}} with z = 0 (the mean μ_θ)", atol=1e-4)
            if i > 0:
                got, _ = mine(eps, v, x, i, alpha_bar, torch.ones_like(x))
                expect_close(got - mean, std, f"{what} at i = {i}, the noise's scale σ_θ", atol=1e-4)


@piece("06_sampling", fallback=lambda: ditlab_ddpm_step,
       fallback_name="ditlab's DDPM step (GaussianDiffusion.p_mean_variance, then μ + σ·z as p_sample)")
def _ddpm_step(mine):
    alpha_bar, eps, v, x, z = _probes()
    diffusion = _schedule(alpha_bar)
    for i in STEPS:
        out = diffusion.p_mean_variance(None, x, torch.full((3,), i), model_output=torch.cat([eps, v], dim=1))
        want = out["mean"] + (i > 0) * torch.exp(0.5 * out["log_variance"]) * z
        _check_ddpm_at(mine, eps, v, x, i, alpha_bar, z, want, f"at step i = {i} of {K}")
    found = _official_dit()
    if found is not None:
        _ddpm_official(mine, *found)
    official_ran("ddpm_step", found is not None)
    return (f"It matches ditlab's p_sample on a {K}-step schedule at a middle, the first and the last steps"
            + (", and the official code's p_mean_variance (1000 and 250 steps, its tiny model)." if found is not None
               else "; the official fixtures are not installed, so that comparison did not run."))


DDIM_MISTAKES = [  # (x_{i−1} from x̂_0, ε̂, ᾱ_{i−1}), the hint
    (lambda x0, eps, ab: ab.sqrt() * eps + (1 - ab).sqrt() * x0,
     "ε̂ and x̂_0 are swapped: x_{i−1} = √ᾱ_{i−1}·(the clean-image guess) + √(1 − ᾱ_{i−1})·(the noise direction)"),
    (lambda x0, eps, ab: ab * x0 + (1 - ab) * eps, "square roots are missing: ᾱ_{i−1} and 1 − ᾱ_{i−1} are variances"),
    (lambda x0, eps, ab: ab.sqrt() * x0 + (1 - ab) * eps, "a square root is missing in the weight of ε̂"),
    (lambda x0, eps, ab: ab * x0 + (1 - ab).sqrt() * eps, "a square root is missing in the weight of x̂_0"),
]


def _check_ddim_at(mine, eps, x, i, alpha_bar, want, what):
    got, x0 = _pair(mine(eps, x, i, alpha_bar), "my_ddim_step")
    _check_x0(x0, eps, x, i, alpha_bar, what)
    if isinstance(got, torch.Tensor) and got.shape == want.shape and not torch.allclose(got, want, atol=1e-4):
        x0 = _x0(eps, x, _ab(alpha_bar, i))
        _require(not torch.allclose(got, x, atol=1e-4), f"{what}, your step returns x_i unchanged: it jumps to ᾱ_i, "
                                                         "its own noise level; use ᾱ_{i−1}, one step nearer the data")
        for k, hint in [(i + 1, "your ᾱ_{i−1} is ᾱ of the step after i: the previous step is index i − 1"),
                        (-1, "at i = 0 your ᾱ_{i−1} is the last entry of alpha_bar (alpha_bar[-1] wraps around): "
                             "before the first kept step ᾱ_{−1} = 1, so the last step returns x̂_0")]:
            if k < len(alpha_bar) and (k == i + 1 or i == 0):
                ab = _ab(alpha_bar, k, wrap=True).float()
                _require(not torch.allclose(got, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, atol=1e-4), f"{what}, {hint}")
        ab_prev = _ab(alpha_bar, i - 1).float()
        for fn, hint in DDIM_MISTAKES:
            _require(not torch.allclose(got, fn(x0, eps, ab_prev), atol=1e-4, rtol=1e-4), f"{what}, {hint}")
    expect_close(got, want, f"{what}, x_{{i−1}}", atol=1e-4)


@piece("06_sampling", fallback=lambda: ditlab_ddim_step,
       fallback_name="ditlab's DDIM step (GaussianDiffusion.ddim_sample)")
def _ddim_step(mine):
    alpha_bar, eps, _, x, _ = _probes(seed=5)
    for i in STEPS:
        want, _ = ditlab_ddim_step(eps, x, i, alpha_bar)
        _check_ddim_at(mine, eps, x, i, alpha_bar, want, f"at step i = {i} of {K}")
    found = _official_dit()
    if found is not None:
        model, reference = found
        for n, (eps, _, x, i, alpha_bar) in enumerate(_official_outputs(model, reference, "pmv_")):
            expect_close(_pair(mine(eps, x, i, alpha_bar), "my_ddim_step")[0], reference["ddim_eta0"][n:n + 1],
                         f"on the official code's inputs at i = {i}, x_{{i−1}}", atol=1e-4)
    official_ran("ddim_step", found is not None)
    return (f"It matches ditlab's ddim_sample (η = 0) on a {K}-step schedule"
            + (" and the official code's DDIM step on its tiny model." if found is not None
               else "; the official fixtures are not installed, so that comparison did not run."))


class _Field:
    """A probe velocity field v(x, t) = sin(x + 2t) − t·x, t (N,); it insists on t being one time per sample."""

    def __init__(self, net=None):
        self.net = net  # or a network's velocity (x, t) -> v

    def __call__(self, x, t):
        _require(isinstance(t, torch.Tensor) and tuple(t.shape) == (len(x),),
                 f"the velocity was called with t of shape {tuple(getattr(t, 'shape', ()))}: the network takes one "
                 f"time per sample, t of shape (N,) = ({len(x)},) — expand the step's time to the batch")
        if self.net is not None:
            return self.net(x, t)
        tt = t.view(-1, *([1] * (x.ndim - 1)))
        return torch.sin(x + 2 * tt) - tt * x


def _check_euler_at(mine, velocity, x, t, t_next, what):
    got = mine(velocity, x, t, t_next)
    with torch.no_grad():
        want = ditlab_euler_step(velocity, x, t, t_next)
        dt, n = t_next - t, len(x)
        if isinstance(got, torch.Tensor) and got.shape == want.shape and not torch.allclose(got, want, atol=1e-5):
            for wrong, hint in [(x - dt * velocity(x, t.expand(n)), "dt has the wrong sign: step by t_next − t"),
                                (x + dt * velocity(x, t_next.expand(n)), "the velocity is taken at t_next: Euler uses "
                                                                         "the slope at the start of the step, t"),
                                (dt * velocity(x, t.expand(n)), "you return the step alone: add it to x")]:
                _require(not torch.allclose(got, wrong, atol=1e-5), f"{what}, {hint}")
    expect_close(got, want, f"{what}, x at t_next", atol=1e-5)


@piece("07_flow_matching", fallback=lambda: ditlab_euler_step,
       fallback_name="ditlab's Euler step (ditlab.diffusion.ode_sample, method 'euler')")
def _euler_step(mine):
    x = randn(3, 2, 4, 4)
    for t, t_next in [(0.0, 0.25), (0.3, 0.7), (0.9, 1.0), (0.8, 0.5)]:  # the last one backwards in time
        _check_euler_at(mine, _Field(), x, torch.tensor(t), torch.tensor(t_next), f"from t = {t} to {t_next}")
    try:
        ref = load_file(fixture_path("official_sit/reference.safetensors"))
        config = json.loads(fixture_path("official_sit/config.json").read_text())["model"]
        state = torch.load(fixture_path("official_sit/SiT-tiny.pt"), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        official_ran("euler_step", False)
        return "It matches ditlab's Euler step (the official fixtures are not installed: that comparison did not run)."
    sit = DiT(DiTConfig(**config)).eval()
    sit.load_state_dict(state)
    velocity = _Field(lambda x_, t_: sit(x_, t_, ref["ode_y"])[:, :4])  # SiT ignores the learned-Σ channels
    grid, x = ref["ode_Linear_velocity_tgrid"], ref["ode_z"]  # (10,) times, (N, 4, 8, 8) starting noise
    with torch.no_grad():
        for k in range(len(grid) - 1):
            x = mine(velocity, x, grid[k], grid[k + 1])
    expect_close(x, ref["ode_Linear_velocity_euler"], f"after the official sampler's {len(grid) - 1} Euler steps with "
                 "the official tiny SiT, x", atol=1e-5)
    official_ran("euler_step")
    return f"It matches ditlab's Euler step and, over {len(grid) - 1} steps of the official tiny SiT, SiT's sampler."
