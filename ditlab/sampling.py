"""Sampling class-conditional images from a DiT (paper §3.1): DDPM with learned Σ or DDIM, respaced to
`steps`, with classifier-free guidance; or any diffusers scheduler (see `ditlab.hub.interop`)."""
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model
from .data.imagenet import imagenet_names
from .diffusion import create_diffusion, sample_with_scheduler
from .io import resolve_device, save_grid
from .model import DiT

SAMPLERS = ("ddpm", "ddim")


@dataclass
class Samples:
    images: torch.Tensor  # (N, C, H, W) in [-1, 1]; latents are decoded when a VAE was given
    labels: torch.Tensor  # (N,)
    trajectory: list = field(default_factory=list)  # per step: dict(t, x_t, pred_x0), CPU tensors (N, C, H, W)
    latents: torch.Tensor | None = None

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
    if not is_scheduler and sampler not in SAMPLERS:
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


def sample(model, labels, *, steps: int = 50, sampler="ddim", cfg_scale: float = 4.0, seed: int = 0,
           eta: float = 0.0, guidance_channels: int | None = None, device=None, progress: bool = True,
           trajectory: bool = False, vae=None, classes: list[str] | None = None) -> Samples:
    """Sample one image per label.

    model: a DiT, or a checkpoint path (ditlab run folder/file, official release or train checkpoint).
    labels: ids or class names; steps: respaced sampling steps (≤ 1000); sampler: "ddpm" (ancestral, learned
    Σ), "ddim" (eta=0 deterministic) or a diffusers scheduler instance; cfg_scale: classifier-free guidance
    scale (1 = none); guidance_channels: None guides all noise channels, 3 the official DiT way.
    vae: a diffusers AutoencoderKL to decode latents (x / 0.18215). Reproducible per seed.
    """
    check_sample_args(steps, sampler, cfg_scale, eta, seed, guidance_channels)
    if not isinstance(model, torch.nn.Module):
        model = load_model(model, device=device or "cpu")
    c = model.config
    is_scheduler = not isinstance(sampler, str)
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
    traj = []
    with torch.no_grad():
        if is_scheduler:
            x, traj = sample_with_scheduler(model, sampler, z[:n], y[:n], steps, cfg_scale=cfg_scale,
                                            guidance_channels=guidance_channels, generator=gen, progress=progress,
                                            trajectory=trajectory)
            traj = traj or []
        else:
            diffusion = create_diffusion(str(steps), learn_sigma=c.learn_sigma)
            loop = diffusion.p_sample_loop_progressive if sampler == "ddpm" else diffusion.ddim_sample_loop_progressive
            extra = dict(eta=eta) if sampler == "ddim" else {}
            x = z
            for i, out in enumerate(loop(fn, noise=z, model_kwargs=kwargs, progress=progress, generator=gen, **extra)):
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
    return Samples(images=x.clamp(-1, 1).cpu(), labels=y[:n].cpu(), trajectory=traj, latents=latents)
