"""Gaussian diffusion: schedules, q/p, hybrid loss, respacing and samplers against the official DiT outputs
(reference.safetensors) and against invariants of the equations."""
import itertools
import math
import random

import numpy as np
import pytest
import torch

from ditlab.diffusion import SpacedDiffusion, create_diffusion, space_timesteps
from ditlab.diffusion.gaussian import (GaussianDiffusion, discretized_gaussian_log_likelihood, get_beta_schedule,
                                       normal_kl)
from ditlab.model import DiT

PMV_KEYS = ("mean", "variance", "log_variance", "pred_xstart")


def close(a, b, atol=1e-5, rtol=1e-5):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


@pytest.fixture(scope="module")
def diffusion():
    return create_diffusion("")


@pytest.fixture(scope="module")
def tiny_model():
    """A small random DiT whose zero-initialised layers are perturbed, so ε and v depend on x, t, y."""
    torch.manual_seed(1)
    model = DiT(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2, num_classes=10)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


# ---- schedules and q ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["betas", "alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                                  "posterior_mean_coef1", "posterior_mean_coef2"])
def test_schedule_matches_official(diffusion, reference, name):
    ours, ref = getattr(diffusion, name), reference[f"diffusion_{name}"]
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    close(ours, ref, atol=1e-12, rtol=1e-12)


def test_linear_schedule_scales_with_T():
    b = get_beta_schedule("linear", 500)
    assert len(b) == 500 and b.dtype == np.float64
    assert b[0] == pytest.approx(2e-4) and b[-1] == pytest.approx(0.04)


def test_cosine_schedule_follows_closed_form():
    T, s = 1000, 0.008
    d = GaussianDiffusion(get_beta_schedule("cosine", T))
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * math.pi / 2) ** 2
    # ᾱ_t = f(t+1)/f(0) wherever β was not clipped at 0.999 (only the very last steps)
    np.testing.assert_allclose(d.alphas_cumprod.numpy()[:-2], (f[1:] / f[0])[:-2], rtol=1e-10)
    assert d.betas.max() <= 0.999 and d.alphas_cumprod[-1] < 1e-6


def test_derived_arrays_consistent(diffusion):
    d = diffusion
    close(d.alphas_cumprod_prev[1:], d.alphas_cumprod[:-1], atol=0, rtol=0)
    close(d.alphas_cumprod_next[:-1], d.alphas_cumprod[1:], atol=0, rtol=0)
    close(d.posterior_log_variance_clipped[0], d.posterior_log_variance_clipped[1], atol=0, rtol=0)
    # β̃_t = β_t (1 − ᾱ_{t-1})/(1 − ᾱ_t) ≤ β_t
    assert (d.posterior_variance <= d.betas).all()


def test_q_sample_matches_official(diffusion, reference):
    x_t = diffusion.q_sample(reference["loss_x0"], reference["t"], reference["loss_noise"])
    close(x_t, reference["q_sample"], atol=1e-6, rtol=1e-6)


def test_q_posterior_recovers_x0_at_t0(diffusion):
    x0, xt = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mean, var, _ = diffusion.q_posterior_mean_variance(x0, xt, torch.zeros(2, dtype=torch.long))
    close(mean, x0)
    close(var, torch.zeros_like(var))


def test_bad_schedule_and_var_type():
    with pytest.raises(ValueError, match="noise_schedule.*linear"):
        create_diffusion(noise_schedule="quadratic")
    with pytest.raises(ValueError, match="model_var_type"):
        GaussianDiffusion(get_beta_schedule("linear", 10), model_var_type="learned")


# ---- respacing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["250", "25", "ddim50"])
def test_respacing_matches_official(reference, spec):
    d = create_diffusion(spec)
    assert isinstance(d, SpacedDiffusion) and d.num_timesteps == len(reference[f"respace_{spec}_timesteps"])
    assert torch.equal(d.timestep_map, reference[f"respace_{spec}_timesteps"])
    close(d.betas, reference[f"respace_{spec}_betas"], atol=1e-12, rtol=1e-12)


def test_space_timesteps_sections():
    steps = space_timesteps(300, "10,15,20")  # IDDPM's example: 3 sections of 100 steps
    assert len(steps) == 45 and steps == sorted(steps)
    assert [s for s in steps if s < 100][::9] == [0, 99] and {100, 199, 200, 299} <= set(steps)
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(1000, "ddim7") == list(range(0, 1000, 143))  # first stride giving exactly 7 steps
    assert space_timesteps(10, [1, 2]) == [0, 5, 9]


def _iddpm_respacing(T, counts):
    """IDDPM's respacing rule written independently from its description: section i of [0, T) (sizes differ by
    at most one, longer ones first) keeps counts[i] steps at the rounded running sums of a float stride."""
    bounds = [0]
    for i in range(len(counts)):
        bounds.append(bounds[-1] + T // len(counts) + (1 if i < T % len(counts) else 0))
    kept = set()
    for lo, hi, c in zip(bounds, bounds[1:], counts):
        stride = (hi - lo - 1) / (c - 1) if c > 1 else 1
        kept |= {lo + round(pos) for pos in itertools.accumulate([stride] * (c - 1), initial=0.0)}
    return sorted(kept)


def test_space_timesteps_follows_the_official_rule_for_every_count():
    mismatched = [n for n in range(1, 1001) if space_timesteps(1000, str(n)) != _iddpm_respacing(1000, [n])]
    assert mismatched == []
    # the two roundings really differ: round(k·stride) picks other indices for 278 counts, 21 among them
    assert space_timesteps(1000, "21") != sorted({round(k * 999 / 20) for k in range(21)})
    steps = space_timesteps(300, "10,15,20")  # the official code keeps 149 here, round(7·99/14) = 150 would not
    assert 149 in steps and 150 not in steps


def test_space_timesteps_random_section_lists_follow_the_official_rule():
    rng = random.Random(0)
    for _ in range(300):
        T = rng.randint(1, 1000)
        sections = rng.randint(1, min(T, 8))
        size = T // sections
        counts = [rng.randint(1, size) for _ in range(sections)]
        spec = ",".join(map(str, counts))
        assert space_timesteps(T, spec) == space_timesteps(T, counts) == _iddpm_respacing(T, counts), (T, spec)


def test_respaced_keeps_alphas_cumprod(diffusion):
    d = create_diffusion("25")
    close(d.alphas_cumprod, diffusion.alphas_cumprod[d.timestep_map], atol=1e-14, rtol=1e-12)


def test_full_respacing_equals_base(diffusion, tiny_model):
    d = create_diffusion("1000")
    assert torch.equal(d.timestep_map, torch.arange(1000))
    for name in ("betas", "alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped"):
        close(getattr(d, name), getattr(diffusion, name), atol=1e-15, rtol=1e-12)
    x, t, y = torch.randn(3, 4, 8, 8), torch.tensor([0, 400, 999]), torch.tensor([1, 2, 3])
    with torch.no_grad():
        a, b = (dd.p_mean_variance(tiny_model, x, t, dict(y=y)) for dd in (d, diffusion))
    for k in PMV_KEYS:
        close(a[k], b[k], atol=0, rtol=0)


@pytest.mark.parametrize("spec", ["abc", "10,x", "2000", "ddim999", "ddim", "ddimx", "0", "500,600"])
def test_bad_respacing(spec):
    with pytest.raises(ValueError, match="timestep_respacing"):
        create_diffusion(spec)


# ---- p, loss and DDIM with the official model ----------------------------------------------------------
def close_pmv(d, out, reference, prefix, t):
    for k in PMV_KEYS:
        if k == "pred_xstart":  # x̂_0 = (x_t − √(1−ᾱ)ε̂)/√ᾱ amplifies ε̂'s float32 error by up to
            s = d.sqrt_alphas_cumprod[t].float().view(-1, 1, 1, 1)  # 1/√ᾱ ≈ 157: compare in x_t units
            close(out[k] * s, reference[prefix + k] * s)
        else:
            close(out[k], reference[prefix + k])


def test_p_mean_variance_matches_official(diffusion, official_model, reference):
    with torch.no_grad():
        out = diffusion.p_mean_variance(official_model, reference["q_sample"], reference["t"], dict(y=reference["y"]))
    close_pmv(diffusion, out, reference, "pmv_", reference["t"])


def test_training_losses_match_official(diffusion, official_model, reference):
    with torch.no_grad():
        out = diffusion.training_losses(official_model, reference["loss_x0"], reference["t"],
                                        dict(y=reference["y"]), noise=reference["loss_noise"])
    for k in ("loss", "mse", "vb"):
        assert out[k].shape == (4,)
        close(out[k], reference[f"loss_{k}"])


def test_ddim_step_matches_official(diffusion, official_model, reference):
    with torch.no_grad():
        out = diffusion.ddim_sample(official_model, reference["q_sample"], reference["t"], dict(y=reference["y"]))
    close(out["sample"], reference["ddim_eta0"])


def test_respaced_p_mean_variance_matches_official(official_model, reference):
    d = create_diffusion("250")  # the model must see the original timesteps 4·i, not the indices i
    with torch.no_grad():
        out = d.p_mean_variance(official_model, reference["q_sample"], reference["respace_250_index"],
                                dict(y=reference["y"]))
    close_pmv(d, out, reference, "respace_250_pmv_", reference["respace_250_index"])


# ---- invariants -----------------------------------------------------------------------------------------
def test_learned_variance_between_posterior_and_beta(diffusion):
    t = torch.tensor([1, 10, 500, 999])
    x = torch.randn(4, 2, 3, 3)
    v = torch.rand(4, 2, 3, 3) * 2 - 1  # v ∈ [-1, 1]
    out = diffusion.p_mean_variance(None, x, t, model_output=torch.cat([torch.randn_like(x), v], 1))
    lo = diffusion.posterior_variance[t].float().view(-1, 1, 1, 1)
    hi = diffusion.betas[t].float().view(-1, 1, 1, 1)
    assert (out["variance"] >= lo * (1 - 1e-5)).all() and (out["variance"] <= hi * (1 + 1e-5)).all()
    ends = diffusion.p_mean_variance(None, x, t, model_output=torch.cat([x, torch.ones_like(x)], 1))
    close(ends["variance"], hi.expand_as(x))  # v = 1 gives β_t, v = -1 gives β̃_t


def test_fixed_variances():
    t = torch.tensor([0, 1, 999])
    x = torch.randn(3, 2, 2, 2)
    small, large = (create_diffusion(learn_sigma=False, sigma_small=s) for s in (True, False))
    vs = small.p_mean_variance(None, x, t, model_output=x)["variance"][:, 0, 0, 0]
    vl = large.p_mean_variance(None, x, t, model_output=x)["variance"][:, 0, 0, 0]
    close(vs, small.posterior_variance[t].float())
    close(vl, torch.stack([small.posterior_variance[1], small.betas[1], small.betas[999]]).float())
    losses = large.training_losses(lambda x, t: x, torch.rand(3, 2, 2, 2), t)
    assert torch.equal(losses["vb"], torch.zeros(3)) and torch.equal(losses["loss"], losses["mse"])


def test_vb_term_trains_only_sigma(diffusion):
    """L_hybrid: gradients of the VB term reach only v; those of L_simple only ε (IDDPM §3.1)."""
    out = torch.randn(2, 4, 3, 3, requires_grad=True)
    t = torch.tensor([0, 300])
    losses = diffusion.training_losses(lambda x, t: out, torch.rand(2, 2, 3, 3) * 2 - 1, t)
    (g_vb,) = torch.autograd.grad(losses["vb"].sum(), out, retain_graph=True)
    (g_mse,) = torch.autograd.grad(losses["mse"].sum(), out)
    assert g_vb[:, :2].abs().max() == 0 and g_vb[:, 2:].abs().max() > 0
    assert g_mse[:, 2:].abs().max() == 0 and g_mse[:, :2].abs().max() > 0


def test_rescaled_vb_scales_with_num_timesteps():
    x0, noise = torch.rand(2, 2, 3, 3) * 2 - 1, torch.randn(2, 2, 3, 3)
    model = lambda x, t: torch.cat([0.5 * x, torch.zeros_like(x)], 1)  # noqa: E731
    t = torch.tensor([3, 7])
    a = create_diffusion("10", rescale_learned_sigmas=True).training_losses(model, x0, t, noise=noise)["vb"]
    b = create_diffusion("10", rescale_learned_sigmas=False).training_losses(model, x0, t, noise=noise)["vb"]
    close(a, b * 10 / 1000)
    default = create_diffusion("10").training_losses(model, x0, t, noise=noise)["vb"]
    assert torch.equal(default, b)  # like the official create_diffusion: no rescaling unless asked for


def test_discretized_likelihood_is_a_distribution_over_256_bins():
    bins = torch.linspace(-1, 1, 256)
    for mean, log_scale in [(0.0, -3.0), (0.3, -1.0), (-0.9, 0.5)]:
        m, s = torch.full_like(bins, mean), torch.full_like(bins, log_scale)
        p = discretized_gaussian_log_likelihood(bins, m, s).double().exp()
        assert p.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_normal_kl():
    m1, m2, lv1, lv2 = torch.randn(4, 4, dtype=torch.float64)
    close(normal_kl(m1, lv1, m1, lv1), torch.zeros(4, dtype=torch.float64))
    p, q = torch.distributions.Normal(m1, (0.5 * lv1).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    close(normal_kl(m1, lv1, m2, lv2), torch.distributions.kl_divergence(p, q))


# ---- samplers -------------------------------------------------------------------------------------------
def oracle_model(base, x0):
    """Predicts the exact ε for data x0 given the ORIGINAL timestep t (v = 0)."""
    def model(x, t):
        ab = base.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        return torch.cat([eps, torch.zeros_like(eps)], 1)
    return model


@pytest.mark.parametrize("spec", ["", "ddim10", "7"])
def test_samplers_recover_x0_with_oracle(diffusion, spec):
    d = create_diffusion(spec)
    x0 = torch.rand(2, 3, 4, 4) * 2 - 1
    model = oracle_model(diffusion, x0)
    g = torch.Generator().manual_seed(0)
    close(d.ddim_sample_loop(model, x0.shape, generator=g), x0, atol=1e-4, rtol=0)
    if spec != "":
        close(d.p_sample_loop(model, x0.shape, generator=g), x0, atol=1e-4, rtol=0)


@pytest.mark.parametrize("sampler", ["p_sample_loop", "ddim_sample_loop"])
def test_sampling_reproducible_per_seed(tiny_model, sampler):
    d = create_diffusion("20")
    kw = dict(model_kwargs=dict(y=torch.tensor([0, 5])))
    if sampler == "ddim_sample_loop":
        kw["eta"] = 0.5  # stochastic DDIM also draws from the generator

    def run(seed):
        return getattr(d, sampler)(tiny_model, (2, 4, 8, 8), generator=torch.Generator().manual_seed(seed), **kw)

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (2, 4, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_progressive_yields_every_step(tiny_model):
    d = create_diffusion("12")
    noise, y = torch.randn(2, 4, 8, 8), torch.tensor([1, 2])
    steps = list(d.p_sample_loop_progressive(tiny_model, noise=noise, model_kwargs=dict(y=y),
                                             generator=torch.Generator().manual_seed(3)))
    assert len(steps) == 12 and all(set(s) == {"sample", "pred_xstart"} for s in steps)
    final = d.p_sample_loop(tiny_model, noise=noise, model_kwargs=dict(y=y), generator=torch.Generator().manual_seed(3))
    assert torch.equal(steps[-1]["sample"], final)
    # last step (t = 0) adds no noise: the sample is the posterior mean = x̂_0
    assert torch.equal(steps[-1]["sample"], steps[-1]["pred_xstart"])
    ddim = list(d.ddim_sample_loop_progressive(tiny_model, noise=noise, model_kwargs=dict(y=y)))
    assert len(ddim) == 12 and torch.equal(ddim[-1]["sample"], d.ddim_sample_loop(tiny_model, noise=noise,
                                                                                   model_kwargs=dict(y=y)))


def test_cfg_passes_through_sampling_loop(tiny_model):
    """CFG = sampling `model.forward_with_cfg` with kwargs y and cfg_scale; scale 1 = the conditional model."""
    d = create_diffusion("ddim8")
    z = torch.randn(2, 4, 8, 8)
    y = torch.tensor([3, 7])
    cond = d.ddim_sample_loop(tiny_model, noise=z, model_kwargs=dict(y=y))
    guided = d.ddim_sample_loop(tiny_model.forward_with_cfg, noise=torch.cat([z, z]),
                                model_kwargs=dict(y=torch.cat([y, torch.full_like(y, 10)]), cfg_scale=1.0))
    close(guided[:2], cond, atol=1e-5, rtol=1e-5)
    g4 = d.ddim_sample_loop(tiny_model.forward_with_cfg, noise=torch.cat([z, z]),
                            model_kwargs=dict(y=torch.cat([y, torch.full_like(y, 10)]), cfg_scale=4.0))
    assert not torch.allclose(g4[:2], cond, atol=1e-3)


def test_sampler_argument_checks(diffusion):
    with pytest.raises(ValueError, match="eta"):
        diffusion.ddim_sample_loop(lambda x, t: x, (1, 1, 2, 2), eta=-1)
    with pytest.raises(ValueError, match="shape"):
        diffusion.p_sample_loop(lambda x, t: x, None)
