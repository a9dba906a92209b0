"""Sampling with a 🤗 diffusers scheduler object (DDIM, DDPM, DPM-Solver, ...) instead of ditlab's own loops.

The scheduler is duck-typed (`set_timesteps`, `step`, `timesteps`, `scale_model_input`): nothing here imports
diffusers. `ditlab.hub.interop.scheduler_from_name` builds schedulers with DiT's β schedule.
"""
import inspect

import torch
from tqdm.auto import tqdm

from ..checks import integer, of_type
from .guidance import Guided
from .settings import Guidance, is_scheduler


def _accepts(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def _uses_sigma(scheduler) -> bool:
    """DDPMScheduler(variance_type="learned_range") is the one scheduler that takes DiT's learned Σ."""
    var_type = getattr(scheduler.config, "variance_type", None)
    use_sigma = type(scheduler).__name__ == "DDPMScheduler" and var_type == "learned_range"
    if var_type in ("learned", "learned_range") and not use_sigma:
        raise ValueError(f"{type(scheduler).__name__} with variance_type={var_type!r} does not match DiT's learned Σ "
                         "(DDPMScheduler: use 'learned_range', DiT's interpolation v; other schedulers: leave "
                         "variance_type unset, ditlab passes ε only)")
    return use_sigma


def _pred_x0(scheduler, res, x, t, eps):
    """The scheduler's x̂0, else x̂0 = (x_t − √(1−ᾱ) ε̂) / √ᾱ where the scheduler has ᾱ and unscaled inputs."""
    x0, ac = getattr(res, "pred_original_sample", None), getattr(scheduler, "alphas_cumprod", None)
    if x0 is None and ac is not None and scheduler.init_noise_sigma == 1:
        a = ac[int(t)].to(x)
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    return x0


@torch.no_grad()
def sample_with_scheduler(model, scheduler, noise: torch.Tensor, labels: torch.Tensor, num_inference_steps: int,
                          cfg_scale: float = 1.0, guidance_channels: int | None = None, generator=None,
                          progress: bool = False, trajectory: bool = False, timesteps: list[int] | None = None):
    """Run a diffusers scheduler with a DiT -> (x0 (N, C, H, W), trajectory list or None).

    noise (N, C, H, W) is x_T, labels (N,). With cfg_scale != 1 the batch is doubled as in DiT's sampling
    ([x; x] with [y; null]) and `model.forward_with_cfg` guides `guidance_channels` (3 = official).
    Learned Σ: only DDPMScheduler(variance_type="learned_range") uses it; other schedulers get ε only.
    timesteps: custom timesteps for schedulers whose `set_timesteps` accepts them (e.g. DDPMScheduler).
    trajectory=True records dict(t, x_t, pred_x0) per step (CPU, first N samples)."""
    if not is_scheduler(scheduler):
        raise TypeError(f"scheduler must be a diffusers scheduler, got {type(scheduler).__name__}")
    of_type("noise", noise, torch.Tensor, "a (N, C, H, W) tensor")
    n, C = noise.shape[:2]
    labels = torch.as_tensor(labels, device=noise.device).long().reshape(-1)
    if noise.ndim != 4 or labels.shape[0] != n:
        raise ValueError(f"noise (N, C, H, W) and labels (N,) must match: {tuple(noise.shape)}, {tuple(labels.shape)}")
    use_sigma = _uses_sigma(scheduler)
    timesteps is None and integer("num_inference_steps", num_inference_steps, min=1, max=1000)
    if isinstance(model, torch.nn.Module):
        model.eval()  # no label dropout while sampling
    guided = Guided(model, labels, Guidance(cfg_scale, guidance_channels))
    x = guided.batch(noise)
    if timesteps is not None:
        scheduler.set_timesteps(timesteps=list(timesteps), device=x.device)
    else:
        scheduler.set_timesteps(num_inference_steps, device=x.device)
    x = x * scheduler.init_noise_sigma
    step_kw = {"generator": generator} if _accepts(scheduler.step, "generator") else {}
    traj = [] if trajectory else None
    for t in tqdm(scheduler.timesteps, disable=not progress):
        out = guided(scheduler.scale_model_input(x, t), t.expand(x.shape[0]).to(x.device))
        if use_sigma and out.shape[1] != 2 * C:
            raise ValueError(f"variance_type='learned_range' needs a learned-Σ model, 2C={2 * C} output channels, not "
                             f"{out.shape[1]}: use scheduler_from_name('ddpm', variance_type='fixed_large')")
        res = scheduler.step(out if use_sigma else out[:, :C], t, x, **step_kw)
        if trajectory:
            x0 = _pred_x0(scheduler, res, x, t, out[:, :C])
            traj.append(dict(t=int(t), x_t=x[:n].cpu(), pred_x0=None if x0 is None else x0[:n].cpu()))
        x = res.prev_sample
    return x[:n], traj
