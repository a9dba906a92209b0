"""Gaussian diffusion as DiT uses it (paper §3.1): DDPM forward process, learned-Σ reverse process,
the hybrid training loss, and DDPM / DDIM samplers.

References: Ho et al. 2020 (DDPM), Nichol & Dhariwal 2021 (IDDPM: cosine schedule, learned Σ, L_hybrid),
Song et al. 2021 (DDIM). All schedule arrays are precomputed in float64 and cast to float32 per timestep.

The model is any callable `model(x, t, **model_kwargs) -> (N, C or 2C, H, W)` predicting ε (and, with a
learned Σ, the interpolation value v in [-1, 1]). Classifier-free guidance needs no extra code: pass
`model.forward_with_cfg` with `model_kwargs=dict(y=torch.cat([y, y_null]), cfg_scale=4.0)` and a noise batch
made of two identical halves; the samples in the first half are the guided ones.
"""
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checks import integer, number, one_of

SCHEDULES = ("linear", "cosine")
MODEL_VAR_TYPES = ("learned_range", "fixed_small", "fixed_large")


def get_beta_schedule(name: str, num_timesteps: int = 1000) -> np.ndarray:
    """β_1..β_T in float64. "linear": DDPM's 1e-4 → 0.02, scaled by 1000/T; "cosine": IDDPM eq. 17."""
    one_of("noise_schedule", name, SCHEDULES)
    integer("num_timesteps", num_timesteps, min=1)
    if name == "linear":
        scale = 1000 / num_timesteps
        return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)
    # cosine: ᾱ(t) = cos²(π/2 · (t/T + s)/(1 + s)), β_t = 1 − ᾱ(t+1)/ᾱ(t) clipped at 0.999
    s = 0.008
    f = np.cos((np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], 0.999)


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_std_normal_cdf(x):
    """Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³)))."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """log p(x) of data in [-1, 1] quantised to 256 bins under N(means, e^(2·log_scales)) (DDPM §3.3)."""
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_std_normal_cdf(inv_std * (centered + 1.0 / 255.0))  # upper bin edge
    cdf_min = approx_std_normal_cdf(inv_std * (centered - 1.0 / 255.0))  # lower bin edge
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))  # first bin: (-∞, edge]
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))  # last bin: [edge, ∞)
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def mean_flat(x):
    return x.mean(dim=tuple(range(1, x.ndim)))  # (N, ...) -> (N,)


def _default_device(model, generator):
    """The generator's device, else that of the model (or of a bound method's module), else CPU."""
    if generator is not None:
        return generator.device
    module = getattr(model, "__self__", model)
    if isinstance(module, torch.nn.Module):
        return next(iter(module.parameters()), torch.empty(0)).device
    return torch.device("cpu")


class GaussianDiffusion:
    """DDPM with T = len(betas) steps; indices t ∈ [0, T). `timestep_map[t]` is what the model is shown
    (the identity here; `SpacedDiffusion` maps respaced indices back to the original timesteps)."""

    def __init__(self, betas, model_var_type: str = "learned_range", rescale_vb: bool = False):
        one_of("model_var_type", model_var_type, MODEL_VAR_TYPES)
        b = np.asarray(betas, dtype=np.float64)
        if b.ndim != 1 or len(b) == 0 or not ((b > 0) & (b <= 1)).all():
            raise ValueError("betas must be a non-empty 1-D array with values in (0, 1]")
        self.model_var_type, self.rescale_vb = model_var_type, rescale_vb
        self.num_timesteps = T = len(b)
        self.timestep_map = torch.arange(T)
        ac = np.cumprod(1.0 - b)  # ᾱ_t
        ac_prev = np.append(1.0, ac[:-1])
        post_var = b * (1.0 - ac_prev) / (1.0 - ac)  # β̃_t (DDPM eq. 7)
        arrays = dict(
            betas=b, alphas_cumprod=ac, alphas_cumprod_prev=ac_prev, alphas_cumprod_next=np.append(ac[1:], 0.0),
            sqrt_alphas_cumprod=np.sqrt(ac), sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - ac),
            sqrt_recip_alphas_cumprod=np.sqrt(1.0 / ac), sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / ac - 1),
            posterior_variance=post_var,
            # β̃_0 = 0, so its log is replaced by log β̃_1
            posterior_log_variance_clipped=np.log(np.append(post_var[1] if T > 1 else b[0], post_var[1:])),
            posterior_mean_coef1=b * np.sqrt(ac_prev) / (1.0 - ac),
            posterior_mean_coef2=(1.0 - ac_prev) * np.sqrt(1.0 - b) / (1.0 - ac),
            log_betas=np.log(b),
        )
        for k, v in arrays.items():
            setattr(self, k, torch.from_numpy(v))  # float64, CPU

    @staticmethod
    def _extract(arr: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """arr[t] as float32 on x's device, shaped (N, 1, 1, ...) to broadcast against x."""
        out = arr[t.cpu()].float().to(x.device)
        return out.view(-1, *([1] * (x.ndim - 1)))

    def _call_model(self, model, x, t, model_kwargs):
        return model(x, self.timestep_map.to(t.device)[t], **(model_kwargs or {}))

    # ---- forward process q ---------------------------------------------------------------------------
    def q_sample(self, x_start, t, noise=None):
        """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε (DDPM eq. 4)."""
        noise = torch.randn_like(x_start) if noise is None else noise
        return (self._extract(self.sqrt_alphas_cumprod, t, x_start) * x_start
                + self._extract(self.sqrt_one_minus_alphas_cumprod, t, x_start) * noise)

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t) (DDPM eq. 6-7) -> (mean, variance, log_variance_clipped)."""
        mean = (self._extract(self.posterior_mean_coef1, t, x_t) * x_start
                + self._extract(self.posterior_mean_coef2, t, x_t) * x_t)
        return (mean, self._extract(self.posterior_variance, t, x_t),
                self._extract(self.posterior_log_variance_clipped, t, x_t))

    def _predict_xstart_from_eps(self, x_t, t, eps):
        return (self._extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
                - self._extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)

    def _predict_eps_from_xstart(self, x_t, t, pred_xstart):
        return ((self._extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - pred_xstart)
                / self._extract(self.sqrt_recipm1_alphas_cumprod, t, x_t))

    # ---- reverse process p ---------------------------------------------------------------------------
    def p_mean_variance(self, model, x, t, model_kwargs=None, clip_denoised=False, denoised_fn=None,
                        model_output=None):
        """p(x_{t-1} | x_t) = N(μ_θ, Σ_θ) -> dict(mean, variance, log_variance, pred_xstart, eps)."""
        if model_output is None:
            model_output = self._call_model(model, x, t, model_kwargs)
        C = x.shape[1]
        if self.model_var_type == "learned_range":
            if model_output.shape[1] != 2 * C:
                raise ValueError(f"learned Σ needs a model output of 2C={2 * C} channels, got {model_output.shape[1]}")
            eps, v = model_output.split(C, dim=1)
            # IDDPM eq. 15: log Σ = frac·log β_t + (1 − frac)·log β̃_t, frac = (v + 1)/2
            min_log = self._extract(self.posterior_log_variance_clipped, t, x)
            max_log = self._extract(self.log_betas, t, x)
            frac = (v + 1) / 2
            log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:
            eps = model_output[:, :C]
            if self.model_var_type == "fixed_small":  # σ² = β̃_t
                var_arr, log_arr = self.posterior_variance, self.posterior_log_variance_clipped
            else:  # "fixed_large": σ² = β_t (β̃_1 at t=0 for a better decoder likelihood)
                var_arr = torch.cat([self.posterior_variance[1:2], self.betas[1:]])
                log_arr = torch.log(var_arr)
            variance = self._extract(var_arr, t, x).expand_as(x)
            log_variance = self._extract(log_arr, t, x).expand_as(x)
        pred_xstart = self._predict_xstart_from_eps(x, t, eps)  # x̂_0 = (x_t − √(1−ᾱ)ε̂)/√ᾱ
        if denoised_fn is not None:
            pred_xstart = denoised_fn(pred_xstart)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)  # μ_θ = μ̃_t(x_t, x̂_0)
        return dict(mean=mean, variance=variance, log_variance=log_variance, pred_xstart=pred_xstart, eps=eps)

    # ---- training loss -------------------------------------------------------------------------------
    def vb_terms_bpd(self, x_start, x_t, t, out):
        """L_{t-1} = KL(q(x_{t-1}|x_t,x_0) ‖ p(x_{t-1}|x_t)) in bits/dim; at t=0 the decoder NLL L_0."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x_start, out["mean"], 0.5 * out["log_variance"])
        nll = mean_flat(nll) / math.log(2.0)
        return torch.where(t == 0, nll, kl)  # (N,)

    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None):
        """L_hybrid = L_simple + L_vlb (IDDPM §3.1) per sample -> dict(loss, mse, vb), each (N,).
        The VB term sees ε̂ detached, so it trains only Σ; with rescale_vb it is scaled by T/1000 (IDDPM's
        "rescaled" loss; off by default, as in DiT)."""
        noise = torch.randn_like(x_start) if noise is None else noise
        x_t = self.q_sample(x_start, t, noise)
        model_output = self._call_model(model, x_t, t, model_kwargs)
        C = x_start.shape[1]
        eps = model_output[:, :C]
        if self.model_var_type == "learned_range":
            frozen = torch.cat([eps.detach(), model_output[:, C:]], dim=1)  # stop-gradient on the mean
            out = self.p_mean_variance(None, x_t, t, model_output=frozen)
            vb = self.vb_terms_bpd(x_start, x_t, t, out)
            if self.rescale_vb:
                vb = vb * (self.num_timesteps / 1000.0)
        else:
            vb = torch.zeros(x_start.shape[0], device=x_start.device)
        mse = mean_flat((noise - eps) ** 2)  # L_simple (DDPM eq. 14)
        return dict(loss=mse + vb, mse=mse, vb=vb)

    # ---- sampling ------------------------------------------------------------------------------------
    def p_sample(self, model, x, t, model_kwargs=None, clip_denoised=False, denoised_fn=None, generator=None):
        """One ancestral step x_t -> x_{t-1} = μ_θ + σ_θ z (no noise at t = 0) -> dict(sample, pred_xstart)."""
        out = self.p_mean_variance(model, x, t, model_kwargs, clip_denoised, denoised_fn)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        nonzero = (t != 0).float().view(-1, *([1] * (x.ndim - 1)))
        return dict(sample=out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * z,
                    pred_xstart=out["pred_xstart"])

    def ddim_sample(self, model, x, t, model_kwargs=None, clip_denoised=False, denoised_fn=None, eta=0.0,
                    generator=None):
        """One DDIM step (Song et al. eq. 12): x_{t-1} = √ᾱ_{t-1} x̂_0 + √(1−ᾱ_{t-1}−σ²) ε̂ + σ z."""
        out = self.p_mean_variance(model, x, t, model_kwargs, clip_denoised, denoised_fn)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])  # consistent with a clipped x̂_0
        ab = self._extract(self.alphas_cumprod, t, x)
        ab_prev = self._extract(self.alphas_cumprod_prev, t, x)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        mean = out["pred_xstart"] * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma ** 2) * eps
        nonzero = (t != 0).float().view(-1, *([1] * (x.ndim - 1)))
        if eta > 0:
            mean = mean + nonzero * sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return dict(sample=mean, pred_xstart=out["pred_xstart"])

    def _loop(self, step, model, shape, noise, model_kwargs, device, progress, generator, **step_kwargs):
        if noise is not None:
            x = noise
        else:
            if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) < 2:
                raise ValueError(f"shape must be a tuple (N, C, H, W) when noise is not given, got {shape!r}")
            device = device if device is not None else _default_device(model, generator)
            x = torch.randn(tuple(shape), generator=generator, device=device)
        indices = range(self.num_timesteps - 1, -1, -1)
        for i in tqdm(indices) if progress else indices:
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            with torch.no_grad():
                out = step(model, x, t, model_kwargs=model_kwargs, generator=generator, **step_kwargs)
            yield out
            x = out["sample"]

    def p_sample_loop_progressive(self, model, shape=None, noise=None, clip_denoised=False, denoised_fn=None,
                                  model_kwargs=None, device=None, progress=False, generator=None):
        """Ancestral sampling from x_T = `noise` (or N(0, I) drawn with `generator`); yields each step's dict."""
        yield from self._loop(self.p_sample, model, shape, noise, model_kwargs, device, progress, generator,
                              clip_denoised=clip_denoised, denoised_fn=denoised_fn)

    def p_sample_loop(self, model, shape=None, noise=None, **kwargs):
        """Run `p_sample_loop_progressive` to the end and return x_0."""
        for out in self.p_sample_loop_progressive(model, shape, noise, **kwargs):
            pass
        return out["sample"]

    def ddim_sample_loop_progressive(self, model, shape=None, noise=None, clip_denoised=False, denoised_fn=None,
                                     model_kwargs=None, device=None, progress=False, eta=0.0, generator=None):
        """DDIM sampling (deterministic for eta=0); yields each step's dict."""
        number("eta", eta, min=0, max=1)  # 0: deterministic DDIM, 1: DDPM-like noise
        yield from self._loop(self.ddim_sample, model, shape, noise, model_kwargs, device, progress, generator,
                              clip_denoised=clip_denoised, denoised_fn=denoised_fn, eta=eta)

    def ddim_sample_loop(self, model, shape=None, noise=None, **kwargs):
        for out in self.ddim_sample_loop_progressive(model, shape, noise, **kwargs):
            pass
        return out["sample"]
