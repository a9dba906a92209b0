"""The checks of notebooks 05, 06, 07 and 09: diffusion training, sampling, flow matching, training on a GPU."""
import math

import numpy as np
import torch

from ..diffusion import create_diffusion, create_flow, get_beta_schedule, get_path, ode_sample
from ..eval import estimate_flops
from ..model import build_model, get_config
from ..sampling import sample
from .exercise_tools import call, close, exercise, expect, randn


# ---------------------------------------------------------------- 05 diffusion training

@exercise("05_diffusion_training")
def _cosine_betas(answer):
    for T in (1000, 50):
        got = torch.as_tensor(np.asarray(call(answer, T)), dtype=torch.float64)
        expect(got.shape == (T,), f"T = {T} betas, got shape {tuple(got.shape)}")
        expect(torch.allclose(got, torch.from_numpy(get_beta_schedule("cosine", T)), rtol=1e-6, atol=1e-9),
                f"wrong values for T = {T}: β_t = 1 − ᾱ(t+1)/ᾱ(t) with s = 0.008, clipped at 0.999")


@exercise("05_diffusion_training")
def _snr_crossing(answer):
    def first(d):
        ac = d.alphas_cumprod
        return int(torch.nonzero(ac / (1 - ac) < 1)[0])
    expected = tuple(first(create_diffusion(noise_schedule=s)) for s in ("linear", "cosine"))
    expect(tuple(int(a) for a in answer) == expected, "a tuple (linear, cosine): the first t with ᾱ_t < 1 − ᾱ_t")
    return f"The cosine schedule keeps the image dominant {expected[1] - expected[0]} steps longer."


@exercise("05_diffusion_training")
def _log_variance(answer):
    diffusion = create_diffusion()
    t = torch.tensor([0, 1, 10, 500, 999])
    v = torch.rand(5, 2, 3, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    want = diffusion.p_mean_variance(None, torch.zeros_like(v), t,
                                     model_output=torch.cat([torch.zeros_like(v), v], 1))["log_variance"]
    got = call(answer, v, t)
    expect(torch.allclose(got.float(), want, atol=1e-5), "log Σ = f·log β_t + (1 − f)·log β̃_t with f = (v + 1)/2, "
                                                          "and β̃_0 replaced by β̃_1 before taking the log")


# ---------------------------------------------------------------- 06 sampling

def _fake_model(x, t, **kwargs):  # a deterministic stand-in for a DiT: (ε, v) from x and t
    return torch.cat([torch.tanh(x) * (t.float().view(-1, 1, 1, 1) / 1000), torch.zeros_like(x)], 1)


@exercise("06_sampling")
def _ddim_eta_step(answer):
    sampler = create_diffusion("10")
    x = randn(3, 2, 4, 4)
    for i, eta in ((5, 0.0), (5, 0.7), (1, 1.0)):
        t = torch.full((3,), i)
        want = sampler.ddim_sample(_fake_model, x, t, eta=eta, generator=torch.Generator().manual_seed(1))["sample"]
        eps = _fake_model(x, sampler.timestep_map[t])[:, :2]
        z = randn(*x.shape, seed=1)
        got = call(answer, x, eps, float(sampler.alphas_cumprod[i]), float(sampler.alphas_cumprod_prev[i]), eta, z)
        expect(torch.allclose(got, want, atol=1e-4), f"wrong for η = {eta}: check σ and the coefficient of ε̂")
    return "η interpolates between deterministic DDIM (0) and ancestral sampling (1)."


@exercise("06_sampling")
def _cfg_forward_images(answer):
    with torch.random.fork_rng():
        model = build_model("DiT-Pico/4", input_size=8, depth=1).eval()
    seen, forward = [], model.forward
    model.forward = lambda x, *a, **k: seen.append(len(x)) or forward(x, *a, **k)  # forward_with_cfg calls it
    sample(model, [0, 1, 2], steps=4, sampler="ddim", cfg_scale=4.0, progress=False)
    expect(answer == sum(seen), "how many forward calls per image, and how many halves does a guided batch have?")
    return f"{len(seen)} calls of {seen[0]} images: guidance doubles the cost of sampling."


@exercise("06_sampling")
def _settled_at(answer, rms):
    expect(answer == next(i for i, r in enumerate(rms) if r < 0.1),
            "the first index i with rms[i] < 0.1 (rms compares each step's clamped x̂_0 with the final image)")


# ---------------------------------------------------------------- 07 flow matching

def _test_field(x, t):  # dx/dt for the Heun exercise: a field whose solver results are easy to tell apart
    return torch.cos(3 * t).view(-1, 1) * x + 1


@exercise("07_flow_matching")
def _heun_step(answer):
    grid, x = torch.tensor([0.0, 0.5, 1.0]), torch.ones(2, 1)
    for k in range(2):
        x = call(answer, _test_field, x, grid[k], grid[k + 1])
    want = ode_sample(create_flow(), _test_field, torch.ones(2, 1), grid, "heun")
    expect(torch.allclose(x, want, atol=1e-6), "evaluate the velocity at the end of the Euler step too (x + dt·v at "
                                               "t_next), then step with the average of the two slopes")
    return "Two evaluations per step and an error of O(dt²) instead of Euler's O(dt)."


@exercise("07_flow_matching")
def _gvp_target(answer):
    t, x0, x1 = torch.rand(5, generator=torch.Generator().manual_seed(0)), randn(5, 1, 4, 4), randn(5, 1, 4, 4, seed=1)
    got = call(answer, t, x0, x1)
    expect(got.shape == x0.shape, f"u_t has the images' shape {tuple(x0.shape)}, got {tuple(got.shape)}")
    expect(torch.allclose(got, get_path("gvp").interpolate(t, x0, x1)[1], atol=1e-5),
           "differentiate α_t = sin(πt/2) and σ_t = cos(πt/2) with respect to t (chain rule: a factor π/2)")
    return "On GVP the speed |u_t| is constant too, but the path is a quarter circle."


@exercise("07_flow_matching")
def _share_in_middle(answer):
    share = math.erf(math.log(3) / math.sqrt(2))  # P(|n| < logit(0.75)), n ~ N(0, 1)
    expect(isinstance(answer, (int, float)) and abs(answer - share) < 0.01,
           "t = 1 − sigmoid(n) with n ~ N(0, 1): t lies in [0.25, 0.75] when |n| <= logit(0.75); the normal's CDF "
           "(or a histogram of many draws) gives the probability")
    return "Logit-normal sampling spends that share of training on the middle half of the path, uniform 0.50."


# ---------------------------------------------------------------- 09 train on a GPU

@exercise("09_train_on_a_gpu")
def _run_cost(answer):
    for name, batch, steps in (("DiT-S/2", 256, 400_000), ("DiT-Mi/4", 64, 3000)):
        forward = estimate_flops(name) / 1e9
        step_gflops, run_pflops = call(answer, get_config(name), batch, steps)
        expect(close(step_gflops, 3 * forward * batch), f"wrong Gflops per step for {name}, batch {batch}: one "
                                                           "forward pass (estimate_flops) × 3 × the batch size")
        expect(close(run_pflops, 3 * forward * batch * steps / 1e6), "the run's Pflops: Gflops per step × steps / 10⁶")
    eflops = 3 * estimate_flops("DiT-S/2") * 256 * 400_000 / 1e18
    return f"DiT-S/2 for 400K steps at batch 256 (the paper's recipe) is {eflops:.1f} Eflops of multiply-adds."


@exercise("09_train_on_a_gpu")
def _resume(answer):
    expect(tuple(answer) == (7000, 777), "checkpoints are written at multiples of 1000")
    return "Choose the checkpoint interval so that a lost interval costs little (a checkpoint takes seconds)."


@exercise("09_train_on_a_gpu")
def _initial_share(answer):
    for decay, steps, warmup in ((0.9999, 1000, False), (0.9999, 1000, True), (0.99, 50, True), (0.9, 3, False)):
        share = 1.0
        for k in range(steps):
            share *= min(decay, (1 + k) / (10 + k)) if warmup else decay
        got = call(answer, decay, steps, warmup)
        expect(abs(float(got) - share) < 1e-6 * max(share, 1e-3), f"wrong for decay {decay}, {steps} steps, "
                f"warmup={warmup}: each step keeps a fraction d_k of the EMA, d_k = min(d, (1+k)/(10+k)) with warm-up")
    return "Without warm-up, 90 % of the EMA is still the random initialisation after 1000 steps."
