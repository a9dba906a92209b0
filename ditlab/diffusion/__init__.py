"""Gaussian diffusion as DiT uses it (paper §3.1): the forward process, learned Σ and the hybrid loss,
DDPM and DDIM steps, timestep respacing; and, after DiT, flow matching on the same backbone (SiT, Ma et al.
2024). The math of a step lives here; `ditlab.sampling` drives a model with it (guidance, labels, batches).

    gaussian.py       GaussianDiffusion: q(x_t|x_0), p(x_{t-1}|x_t), L_hybrid, DDPM / DDIM steps and loops
    respace.py        space_timesteps, SpacedDiffusion and create_diffusion (the factory DiT uses)
    interpolants.py   the Linear (rectified flow), GVP and VP paths; velocity <-> score <-> noise
    flow.py           FlowMatching: predictions, SiT's losses, uniform / logit-normal t, SD3's time shift
    flow_sampling.py  ODE (Euler, Heun, dopri5) and SDE (Euler–Maruyama, Heun) samplers, the likelihood

The model is any callable `model(x, t, **kwargs)`; nothing here imports the rest of ditlab.
"""
from .flow import FlowMatching, create_flow, time_shift
from .flow_sampling import log_likelihood, ode_sample, sampling_grid, sde_sample
from .gaussian import GaussianDiffusion, discretized_gaussian_log_likelihood, get_beta_schedule, normal_kl
from .interpolants import GVP, VP, Linear, get_path
from .respace import SpacedDiffusion, create_diffusion, space_timesteps

__all__ = ["FlowMatching", "GVP", "GaussianDiffusion", "Linear", "SpacedDiffusion", "VP", "create_diffusion",
           "create_flow", "discretized_gaussian_log_likelihood", "get_beta_schedule", "get_path", "log_likelihood",
           "normal_kl", "ode_sample", "sampling_grid", "sde_sample", "space_timesteps",
           "time_shift"]
