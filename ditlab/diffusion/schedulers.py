"""Sampling with a 🤗 diffusers scheduler object (DDIM, DDPM, DPM-Solver, ...) instead of ditlab's own loops.

The scheduler is duck-typed (`set_timesteps`, `step`, `timesteps`, `scale_model_input`): nothing here imports
diffusers. `ditlab.hub.interop.scheduler_from_name` builds schedulers with DiT's β schedule.
"""
import inspect

import torch
from tqdm.auto import tqdm


def _accepts(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


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
    if not (hasattr(scheduler, "set_timesteps") and hasattr(scheduler, "step")):
        raise TypeError(f"scheduler must be a diffusers scheduler, got {type(scheduler).__name__}")
    if not isinstance(noise, torch.Tensor) or noise.ndim != 4:
        raise ValueError(f"noise must be a (N, C, H, W) tensor, got {getattr(noise, 'shape', type(noise))}")
    n, C = noise.shape[:2]
    labels = torch.as_tensor(labels, device=noise.device).long().reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match noise, got {tuple(labels.shape)}")
    var_type = getattr(scheduler.config, "variance_type", None)
    use_sigma = type(scheduler).__name__ == "DDPMScheduler" and var_type == "learned_range"
    if var_type in ("learned", "learned_range") and not use_sigma:
        raise ValueError(f"{type(scheduler).__name__} with variance_type={var_type!r} does not match DiT's learned Σ "
                         "(DDPMScheduler: use 'learned_range', DiT's interpolation v; other schedulers: leave "
                         "variance_type unset, ditlab passes ε only)")
    if timesteps is None and (not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= 1000):
        raise ValueError(f"num_inference_steps must be an int in [1, 1000], got {num_inference_steps!r}")
    if isinstance(model, torch.nn.Module):
        model.eval()  # no label dropout while sampling
    if cfg_scale != 1:
        if not hasattr(model, "forward_with_cfg"):
            raise TypeError("cfg_scale != 1 needs a ditlab DiT (model.forward_with_cfg)")
        x = torch.cat([noise, noise])  # conditional half, unconditional half (paper §3.1)
        y = torch.cat([labels, torch.full_like(labels, model.config.num_classes)])  # null label

        def fn(x, t):
            return model.forward_with_cfg(x, t, y, cfg_scale, guidance_channels=guidance_channels)
    else:
        x, y = noise, labels

        def fn(x, t):
            return model(x, t, y)
    if timesteps is not None:
        scheduler.set_timesteps(timesteps=list(timesteps), device=x.device)
    else:
        scheduler.set_timesteps(num_inference_steps, device=x.device)
    x = x * scheduler.init_noise_sigma
    step_kw = {"generator": generator} if _accepts(scheduler.step, "generator") else {}
    ac = getattr(scheduler, "alphas_cumprod", None)
    traj = [] if trajectory else None
    for t in tqdm(scheduler.timesteps, disable=not progress):
        out = fn(scheduler.scale_model_input(x, t), t.expand(x.shape[0]).to(x.device))
        if use_sigma and out.shape[1] != 2 * C:
            raise ValueError(f"variance_type={var_type!r} needs a learned-Σ model (2C={2 * C} output channels), "
                             f"got {out.shape[1]}: use scheduler_from_name('ddpm', variance_type='fixed_large')")
        res = scheduler.step(out if use_sigma else out[:, :C], t, x, **step_kw)
        if trajectory:
            x0 = getattr(res, "pred_original_sample", None)
            if x0 is None and ac is not None and scheduler.init_noise_sigma == 1:
                # x̂0 = (x_t − √(1−ᾱ) ε̂) / √ᾱ
                a = ac[int(t)].to(x)
                x0 = (x - (1 - a).sqrt() * out[:, :C]) / a.sqrt()
            traj.append(dict(t=int(t), x_t=x[:n].cpu(), pred_x0=None if x0 is None else x0[:n].cpu()))
        x = res.prev_sample
    return x[:n], traj
