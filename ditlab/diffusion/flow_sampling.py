"""Sampling a flow-matching model (SiT §2): integrate from noise (t = t0) to data (t = t1).

    ODE  dx = v(x, t) dt                                   "euler", "heun" (2nd order), "dopri5" (adaptive)
    SDE  dx = [v + w_t·s](x, t) dt + √(2·w_t) dW_t          "euler" (Euler–Maruyama), "heun"
         with the score s = ∇log p_t and a diffusion coefficient w_t of your choice (`Path.diffusion`):
         every w_t gives the same marginals p_t, so one trained model serves all of them.

`steps` is the number of integration steps on `sampling_grid` (SiT's `num_steps` is steps + 1); the
network is called once per step by "euler" (ODE and SDE), twice by "heun", as the solver decides by
"dopri5" (torchdiffeq, the library SiT uses), and once more by an SDE's last step. `model` is any
`model(x, t, **model_kwargs)`; for guidance pass `model.forward_with_cfg` and its kwargs.
"""
import torch
from tqdm.auto import tqdm

from ..checks import integer, one_of
from ..extras import requires
from .flow import FlowMatching, prior_logp, time_shift

ODE_METHODS = ("euler", "heun", "dopri5")
SDE_METHODS = ("euler", "heun")
LAST_STEPS = ("mean", "tweedie", "euler", None)


def sampling_grid(flow: FlowMatching, steps: int, sde: bool = False, diffusion_form: str = "sigma",
                  last_step_size: float = 0.04, shift: float = 1.0, reverse: bool = False) -> torch.Tensor:
    """(steps + 1,) float32 times from t0 to t1 (`FlowMatching.interval`), evenly spaced, then SD3-shifted."""
    integer("steps", steps, min=1)
    t0, t1 = flow.interval(sde=sde, diffusion_form=diffusion_form, last_step_size=last_step_size if sde else 0.0,
                           reverse=reverse)
    if sde and diffusion_form == "SBDM" and t0 == 0 and flow.path.name != "vp":
        raise ValueError(f"diffusion_form='SBDM' makes w_t infinite at t = 0, where this {flow.path.name} model starts "
                         "sampling (sample_eps = 0; the official code returns NaN): use another, e.g. 'sigma'")
    return time_shift(torch.linspace(t0, t1, steps + 1), shift)


def _times(t, x):
    return t.to(x.device).expand(x.shape[0])  # the same t for every sample, (N,)


def ode_sample_progressive(flow, model, noise, grid, method="euler", model_kwargs=None, progress=False):
    """Fixed-grid ODE steps from x = noise at grid[0]; yields dict(t, x_t, velocity, sample) per step."""
    one_of("fixed-grid ODE method", method, ("euler", "heun"))
    kw, x = model_kwargs or {}, noise
    pairs = list(zip(grid[:-1], grid[1:]))
    for t, t_next in tqdm(pairs, disable=not progress):
        dt = t_next - t
        v = flow.velocity(model, x, _times(t, x), **kw)  # (N, C, H, W)
        if method == "euler":
            x_next = x + dt * v
        else:  # Heun: average the slopes at both ends of the Euler step (torchdiffeq's "heun2")
            v2 = flow.velocity(model, x + dt * v, _times(t_next, x), **kw)
            x_next = x + dt * (v * 0.5 + v2 * 0.5)
        yield dict(t=float(t), x_t=x, velocity=v, sample=x_next)
        x = x_next


def ode_sample(flow, model, noise, grid, method="euler", model_kwargs=None, atol=1e-6, rtol=1e-3,
               trajectory=False, progress=False):
    """x at grid[-1] (or all grid states (len(grid), N, C, H, W) with trajectory=True); dopri5 via torchdiffeq."""
    one_of("ODE method", method, ODE_METHODS)
    if method == "dopri5":
        with requires("flow"):  # or use method='euler' / 'heun', which need nothing
            from torchdiffeq import odeint  # heavy optional dependency (the [flow] extra)
        kw = model_kwargs or {}
        states = odeint(lambda t, x: flow.velocity(model, x, _times(t, x), **kw), noise, grid.to(noise.device),
                        method="dopri5", atol=[atol], rtol=[rtol])  # 1-element lists: float32 error norm, as SiT
        return states if trajectory else states[-1]
    states = [noise]
    for out in ode_sample_progressive(flow, model, noise, grid, method, model_kwargs, progress):
        states.append(out["sample"])
    return torch.stack(states) if trajectory else states[-1]


def _draw(noise, generator, i, x):
    if noise is not None:
        return noise[i].to(x)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def sde_sample_progressive(flow, model, noise, grid, method="euler", model_kwargs=None, diffusion_form="sigma",
                           diffusion_norm=1.0, last_step="mean", last_step_size=0.04, draws=None, generator=None,
                           progress=False):
    """len(grid) − 1 stochastic steps from x = noise, then the last step from grid[-1]; yields dict(t, x_t,
    sample) per step. draws: (steps, N, C, H, W) Gaussian draws to use instead of `generator`'s."""
    one_of("SDE method", method, SDE_METHODS)
    one_of("last_step", last_step, LAST_STEPS)
    kw, x, path = model_kwargs or {}, noise, flow.path

    def drift(x, t):  # the SDE's drift v + w_t·s from one network call
        out = flow._model(model, x, t, kw)
        return flow.velocity_from_output(out, x, t) + path.diffusion(x, t, diffusion_form, diffusion_norm) * \
            flow.score_from_output(out, x, t)

    pairs = list(zip(grid[:-1], grid[1:]))
    for i, (t, t_next) in enumerate(tqdm(pairs, disable=not progress)):
        dt, tt = t_next - t, _times(t, x)
        dw = _draw(draws, generator, i, x) * torch.sqrt(dt)  # Brownian increment, (N, C, H, W)
        noise_scale = torch.sqrt(2 * path.diffusion(x, tt, diffusion_form, diffusion_norm))
        if method == "euler":  # Euler–Maruyama
            x_next = x + drift(x, tt) * dt + noise_scale * dw
        else:  # stochastic Heun: add the noise first, then a Heun step of the drift
            x_hat = x + noise_scale * dw
            k1 = drift(x_hat, tt)
            k2 = drift(x_hat + dt * k1, _times(t_next, x))
            x_next = x_hat + 0.5 * dt * (k1 + k2)
        yield dict(t=float(t), x_t=x, sample=x_next)
        x = x_next
    t1 = _times(grid[-1], x)
    if last_step == "mean":  # one noiseless SDE-drift step to t = t1 + last_step_size
        x_last = x + drift(x, t1) * last_step_size
    elif last_step == "euler":  # one probability-flow ODE step
        x_last = x + flow.velocity(model, x, t1, **kw) * last_step_size
    elif last_step == "tweedie":  # E[x1 | x_t] = (x + σ²·s)/α (Tweedie's formula)
        a, s = path.alpha(t1[:1])[0], path.sigma(t1[:1])[0]
        x_last = x / a + s**2 / a * flow.score(model, x, t1, **kw)
    else:
        x_last = x
    yield dict(t=float(grid[-1]), x_t=x, sample=x_last)


def sde_sample(flow, model, noise, grid, trajectory=False, **kwargs):
    """x after the last step (or all states after each step, (len(grid), N, C, H, W), with trajectory=True)."""
    states = [out["sample"] for out in sde_sample_progressive(flow, model, noise, grid, **kwargs)]
    return torch.stack(states) if trajectory else states[-1]


def log_likelihood(flow, model, x, steps: int, method="euler", model_kwargs=None, rademacher=None, generator=None):
    """(log p(x) in nats (N,), latent z) by integrating the ODE from data to noise (instantaneous change of
    variables, Chen et al. 2018): log p(x) = log N(z; 0, I) − ∫ ∇·v dt, with Hutchinson's estimate ∇·v ≈ εᵀ(∂v/∂x)ε,
    ε Rademacher (one draw per network call; `rademacher` (calls, N, C, H, W) of 0/1 injects them). Fixed grid:
    "euler" or "heun". As SiT's `sample_ode_likelihood`."""
    one_of("likelihood method", method, ("euler", "heun"))
    kw, grid, calls = model_kwargs or {}, sampling_grid(flow, steps), [0]

    def f(z, s):  # d/ds of (z, Δlog p) at reversed time t = 1 − s
        r = rademacher[calls[0]].to(z) if rademacher is not None else \
            torch.randint(2, z.shape, generator=generator, device=z.device).to(z)
        calls[0] += 1
        eps = 2 * r - 1
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            v = flow.velocity(model, z, _times(1 - s, z), **kw)
            (grad,) = torch.autograd.grad((v * eps).sum(), z)
        return -v.detach(), (grad * eps).flatten(1).sum(1)

    z, delta = x, torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for s, s_next in zip(grid[:-1], grid[1:]):
        ds = s_next - s
        dz, dd = f(z, s)
        if method == "heun":
            dz2, dd2 = f(z + ds * dz, s_next)
            dz, dd = dz * 0.5 + dz2 * 0.5, dd * 0.5 + dd2 * 0.5
        z, delta = z + ds * dz, delta + ds * dd
    return prior_logp(z) - delta, z
