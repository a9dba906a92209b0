"""Sampling class-conditional images from a DiT (paper §3.1): DDPM with learned Σ or DDIM, respaced to
`steps`, with classifier-free guidance; or any diffusers scheduler (see `ditlab.hub.interop`). A model trained
with flow matching (SiT; `model.objective`, recorded in its checkpoint) is sampled with the ODE/SDE samplers
of `ditlab.diffusion.flow_sampling` instead; each family refuses the other's models."""
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model
from .data.imagenet import imagenet_names
from .diffusion import create_diffusion, sample_with_scheduler
from .diffusion.flow import FlowMatching, create_flow
from .diffusion.flow_sampling import ode_sample, ode_sample_progressive, sampling_grid, sde_sample_progressive
from .io import resolve_device, save_grid
from .model import DiT

DDPM_SAMPLERS = ("ddim", "ddpm")
FLOW_SAMPLERS = ("euler", "heun", "dopri5", "sde-euler", "sde-heun")  # ODE, then SDE (Euler–Maruyama, Heun)
SAMPLERS = DDPM_SAMPLERS + FLOW_SAMPLERS


@dataclass
class Samples:
    images: torch.Tensor  # (N, C, H, W) in [-1, 1]; latents are decoded when a VAE was given
    labels: torch.Tensor  # (N,)
    trajectory: list = field(default_factory=list)  # per step: dict(t, x_t, pred_x0), CPU tensors (N, C, H, W)
    latents: torch.Tensor | None = None
    nfe: int = 0  # network evaluations (each on the whole batch, doubled by guidance)

    def save(self, path, nrow: int | None = None) -> Path:
        return save_grid(self.images, path, nrow=nrow)


def parse_labels(labels, num_classes: int, classes: list | None = None) -> torch.Tensor:
    """Ids or class names (case-insensitive; an entry of `classes` may be a list of synonyms) -> (N,) long
    tensor; out-of-range ids and unknown names raise ValueError, floats and booleans TypeError."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):  # floats and booleans are not class ids
            raise TypeError(f"labels must be class ids (ints) or names (str), got an array of {labels.dtype}")
        labels = labels.reshape(-1).tolist()
    elif isinstance(labels, (str, numbers.Number)):
        labels = [labels]
    elif not isinstance(labels, (list, tuple)):
        raise TypeError(f"labels must be a class id, a class name, or a list of them, got {type(labels).__name__}")
    names = {}
    for i, c in enumerate(classes or []):
        for alias in [c] if isinstance(c, str) else c:
            names.setdefault(alias.lower(), i)
    out = []
    for lab in labels:
        if isinstance(lab, bool) or not isinstance(lab, (str, numbers.Integral)):
            raise TypeError(f"labels must be class ids (ints) or names (str), got {type(lab).__name__} {lab!r}")
        if isinstance(lab, str) and not lab.strip().lstrip("-").isdigit():
            if lab.lower() not in names:
                shown = [c if isinstance(c, str) else c[0] for c in (classes or [])]
                shown = shown if len(shown) <= 20 else shown[:20] + ["..."]
                raise ValueError(f"unknown class name {lab!r}; valid names: {shown} or ids 0..{num_classes - 1}")
            out.append(names[lab.lower()])
        else:
            i = int(lab)
            if not 0 <= i < num_classes:
                raise ValueError(f"class label {i} out of range: valid ids are 0..{num_classes - 1}")
            out.append(i)
    if not out:
        raise ValueError("labels must not be empty")
    return torch.tensor(out, dtype=torch.long)


def check_sample_args(steps, sampler, cfg_scale, eta, seed, guidance_channels) -> None:
    """The sampling options of `sample()`, checked before any model is loaded (the CLI calls it first too)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 1000:
        raise ValueError(f"steps must be an int in [1, 1000], got {steps!r}")
    is_scheduler = hasattr(sampler, "set_timesteps") and hasattr(sampler, "step")
    if not is_scheduler and sampler is not None and sampler not in SAMPLERS:  # None: the model's default
        raise ValueError(f"sampler must be one of {list(SAMPLERS)} or a diffusers scheduler, got {sampler!r}")
    for name, v in (("cfg_scale", cfg_scale), ("eta", eta)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be a number, got {type(v).__name__} {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}: a NaN or infinite guidance scale gives black images")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if guidance_channels is not None and (isinstance(guidance_channels, bool) or not isinstance(guidance_channels, int)
                                          or guidance_channels < 1):
        raise ValueError(f"guidance_channels must be None or a positive int, got {guidance_channels!r}")


def _classes_of(model: DiT) -> list[str] | None:
    """Class names stored with the model; ImageNet's for 1000-class models (the released DiTs)."""
    names = getattr(model, "classes", None)
    if names is None and model.config.num_classes == 1000:
        names = imagenet_names()
    return names


def objective_of(model) -> dict:
    """What a model was trained for: `model.objective` (set by `load_model` and `train`), else DDPM."""
    return getattr(model, "objective", None) or {"objective": "ddpm"}


def is_flow(model) -> bool:
    return objective_of(model).get("objective") == "flow"


def samplers_for(model) -> tuple[str, ...]:
    """The sampler names that fit a model: DDPM's or the flow ODE/SDE ones; the first is the default."""
    return FLOW_SAMPLERS if is_flow(model) else DDPM_SAMPLERS


def flow_of(model) -> FlowMatching:
    """The `FlowMatching` a flow model was trained with (path, prediction, eps intervals) from its record."""
    o = objective_of(model)
    if o.get("objective") != "flow":
        raise ValueError(f"this model was trained with objective {o.get('objective')!r}, not flow matching")
    return create_flow(o.get("path", "linear"), o.get("prediction", "velocity"), o.get("loss_weight"),
                       train_eps=o.get("train_eps"), sample_eps=o.get("sample_eps"))


def _check_sampler(model, sampler, is_scheduler: bool) -> None:
    o = objective_of(model)
    fits = samplers_for(model)
    if sampler in fits or (is_scheduler and not is_flow(model)):
        return
    what = "a diffusers scheduler" if is_scheduler else repr(sampler)
    if is_scheduler or sampler in SAMPLERS:
        trained = ", ".join(f"{k} {v}" for k, v in o.items() if k in ("path", "prediction") and v)
        raise ValueError(f"sampler {what} does not fit this model: it was trained with objective "
                         f"{o['objective']!r}{f' ({trained})' if trained else ''}; use one of {list(fits)}")
    raise ValueError(f"sampler must be one of {list(fits)} for this {o['objective']} model"
                     f"{' or a diffusers scheduler' if not is_flow(model) else ''}, got {sampler!r}")


def sample(model, labels, *, steps: int = 50, sampler=None, cfg_scale: float = 4.0, seed: int = 0,
           eta: float = 0.0, guidance_channels: int | None = None, device=None, progress: bool = True,
           trajectory: bool = False, vae=None, classes: list[str] | None = None, time_shift: float = 1.0,
           cfg_interval: tuple[float, float] | None = None, diffusion_form: str = "sigma") -> Samples:
    """Sample one image per label.

    model: a DiT, or a checkpoint path (ditlab run folder/file, official release or train checkpoint).
    labels: ids or class names; steps: sampling steps (≤ 1000); cfg_scale: classifier-free guidance scale
    (1 = none); guidance_channels: None guides all noise channels, 3 the official DiT / SiT way.
    sampler (default: the first that fits the model):
      DDPM models: "ddim" (eta=0 deterministic), "ddpm" (ancestral, learned Σ) or a diffusers scheduler;
      flow models: ODE "euler", "heun" (2 evaluations per step), "dopri5" (adaptive, torchdiffeq), or SDE
      "sde-euler" (Euler–Maruyama), "sde-heun" with SiT's `diffusion_form` (its w_t; default "sigma").
    Flow only: time_shift (SD3's shift of the time grid, 1 = none), cfg_interval=(t_lo, t_hi): guidance only
    while t (0 noise, 1 data) is in the interval, plain conditional elsewhere (Kynkäänniemi et al. 2024).
    vae: a diffusers AutoencoderKL to decode latents (x / 0.18215). Reproducible per seed.
    """
    check_sample_args(steps, sampler, cfg_scale, eta, seed, guidance_channels)
    if not isinstance(model, torch.nn.Module):
        model = load_model(model, device=device or "cpu")
    c = model.config
    is_scheduler = sampler is not None and not isinstance(sampler, str)
    sampler = samplers_for(model)[0] if sampler is None else sampler
    _check_sampler(model, sampler, is_scheduler)
    flow = is_flow(model)
    if not flow and (cfg_interval is not None or time_shift != 1):
        raise ValueError("cfg_interval and time_shift apply to flow-matching models (sampler euler, heun, ...); "
                         "this model was trained with the DDPM objective")
    if cfg_interval is not None and not (len(cfg_interval) == 2 and 0 <= cfg_interval[0] <= cfg_interval[1] <= 1):
        raise ValueError(f"cfg_interval must be (t_lo, t_hi) with 0 <= t_lo <= t_hi <= 1, got {cfg_interval!r}")
    if trajectory and sampler in ("dopri5", "sde-euler", "sde-heun"):
        raise ValueError(f"trajectory=True is recorded for the samplers {['ddim', 'ddpm', 'euler', 'heun']}, "
                         f"not {sampler!r}")
    if cfg_scale != 1 and not c.has_null_class:
        raise ValueError(f"cfg_scale={cfg_scale} needs a model trained with label dropout (a null class); "
                         "this one has class_dropout_prob=0: use cfg_scale=1")
    y = parse_labels(labels, c.num_classes, classes or _classes_of(model))
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    model = model.eval()
    y = y.to(device)
    n = len(y)
    gen = torch.Generator(device).manual_seed(seed)
    z = torch.randn((n, c.in_channels, *c.hw), generator=gen, device=device)
    guided = cfg_scale != 1
    if guided:  # conditional and unconditional halves share the noise (paper §3.1)
        z = torch.cat([z, z])
        y = torch.cat([y, torch.full_like(y, c.num_classes)])
        fn = model.forward_with_cfg
        kwargs = dict(y=y, cfg_scale=cfg_scale, guidance_channels=guidance_channels)
    else:
        fn, kwargs = model.forward, dict(y=y)
    calls = [0]

    def counted(x, t, **kw):  # every network evaluation goes through here
        calls[0] += 1
        if guided and cfg_interval is not None and not cfg_interval[0] <= float(t[0]) <= cfg_interval[1]:
            out = model(x[:n], t[:n], kw["y"][:n])  # outside the interval: conditional only, half the cost
            return torch.cat([out, out])
        return fn(x, t, **kw)

    traj = []
    with torch.no_grad():
        if is_scheduler:
            x, traj = sample_with_scheduler(model, sampler, z[:n], y[:n], steps, cfg_scale=cfg_scale,
                                            guidance_channels=guidance_channels, generator=gen, progress=progress,
                                            trajectory=trajectory)
            traj = traj or []
        elif flow:
            x, traj = _sample_flow(flow_of(model), counted, z, kwargs, sampler, steps, time_shift, diffusion_form,
                                   gen, progress, trajectory, n)
        else:
            diffusion = create_diffusion(str(steps), learn_sigma=c.learn_sigma)
            loop = diffusion.p_sample_loop_progressive if sampler == "ddpm" else diffusion.ddim_sample_loop_progressive
            extra = dict(eta=eta) if sampler == "ddim" else {}
            x = z
            for i, out in enumerate(loop(counted, noise=z, model_kwargs=kwargs, progress=progress, generator=gen,
                                         **extra)):
                if trajectory:  # x_t is the input of this step, pred_x0 the model's guess of the clean image
                    t = int(diffusion.timestep_map[diffusion.num_timesteps - 1 - i])
                    traj.append(dict(t=t, x_t=x[:n].cpu(), pred_x0=out["pred_xstart"][:n].cpu()))
                x = out["sample"]
            x = x[:n]
    latents = None
    if vae is not None:
        latents = x
        with torch.no_grad():
            x = vae.decode(x.to(vae.dtype) / 0.18215).sample.float()
    return Samples(images=x.clamp(-1, 1).cpu(), labels=y[:n].cpu(), trajectory=traj, latents=latents,
                   nfe=calls[0] if not is_scheduler else steps)


def _sample_flow(flow, fn, z, kwargs, sampler, steps, shift, diffusion_form, gen, progress, trajectory, n):
    """Integrate a flow model from noise z; returns (x (n, C, H, W), trajectory: per step dict(t, x_t, pred_x0))."""
    if sampler == "dopri5":
        return ode_sample(flow, fn, z, sampling_grid(flow, steps, shift=shift), "dopri5", kwargs)[:n], []
    if sampler.startswith("sde-"):
        grid = sampling_grid(flow, steps, sde=True, diffusion_form=diffusion_form, shift=shift)
        loop = sde_sample_progressive(flow, fn, z, grid, sampler[4:], kwargs, diffusion_form, generator=gen,
                                      progress=progress)
    else:
        loop = ode_sample_progressive(flow, fn, z, sampling_grid(flow, steps, shift=shift), sampler, kwargs, progress)
    traj, x = [], z
    for out in loop:
        if trajectory:  # x_t and the model's guess of the data x̂1 = E[x1 | x_t] at this step
            t = torch.full((n,), out["t"], device=z.device)
            pred = flow.path.data_from_velocity(out["velocity"][:n], out["x_t"][:n], t)
            traj.append(dict(t=out["t"], x_t=out["x_t"][:n].cpu(), pred_x0=pred.cpu()))
        x = out["sample"]
    return x[:n], traj
