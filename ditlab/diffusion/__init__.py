"""Gaussian diffusion as DiT uses it (paper §3.1): the forward process, learned Σ and the hybrid loss,
DDPM and DDIM sampling, timestep respacing, and running a 🤗 diffusers scheduler.

    gaussian.py    GaussianDiffusion: q(x_t|x_0), p(x_{t-1}|x_t), L_hybrid, DDPM / DDIM steps and loops
    respace.py     space_timesteps, SpacedDiffusion and create_diffusion (the factory DiT uses)
    schedulers.py  sample_with_scheduler: the same model driven by any diffusers scheduler object

The model is any callable `model(x, t, **kwargs)`; nothing here imports the rest of ditlab.
"""
from .gaussian import GaussianDiffusion, discretized_gaussian_log_likelihood, get_beta_schedule, normal_kl
from .respace import SpacedDiffusion, create_diffusion, space_timesteps
from .schedulers import sample_with_scheduler

__all__ = ["GaussianDiffusion", "SpacedDiffusion", "create_diffusion", "discretized_gaussian_log_likelihood",
           "get_beta_schedule", "normal_kl", "sample_with_scheduler", "space_timesteps"]
