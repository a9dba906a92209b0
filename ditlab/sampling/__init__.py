"""Sampling class-conditional images from a DiT (paper §3.1), one module per family of samplers:

    settings.py    the sampler names, `Guidance` and `Sampler` (checked where made), which of them fit a model
    guidance.py    classifier-free guidance: the one helper all samplers call the network through
    ddpm.py        DDPM with learned Σ or DDIM, respaced to `steps` (Gaussian diffusion models)
    flow.py        the ODE / SDE samplers of a flow-matching model (SiT; `model.objective`, in its checkpoint)
    schedulers.py  any 🤗 diffusers scheduler (see `ditlab.hub.interop`)
    labels.py      class ids or names -> labels

`sample()` picks the family from the model; each family refuses the other's models.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..checkpoint import load_model
from ..checks import integer
from ..io import resolve_device, save_grid
from .ddpm import sample_ddpm
from .flow import sample_flow
from .guidance import Guided
from .labels import MAX_IMAGES, classes_of, parse_labels
from .schedulers import sample_with_scheduler
from .settings import (DDPM_SAMPLERS, FLOW_SAMPLERS, SAMPLERS, Guidance, Sampler, fit, flow_of, is_flow,
                       is_scheduler, objective_of, samplers_for)

__all__ = ["DDPM_SAMPLERS", "FLOW_SAMPLERS", "MAX_IMAGES", "SAMPLERS", "Guidance", "Sampler", "Samples", "check_settings", "flow_of",
           "is_flow", "objective_of", "parse_labels", "sample", "sample_with_scheduler", "samplers_for"]
BATCH = 1024  # images per network batch (doubled by guidance); more labels are sampled batch after batch


@dataclass
class Samples:
    images: torch.Tensor  # (N, C, H, W) in [-1, 1]; latents are decoded when a VAE was given
    labels: torch.Tensor  # (N,)
    trajectory: list = field(default_factory=list)  # per step: dict(t, x_t, pred_x0), CPU tensors (N, C, H, W)
    latents: torch.Tensor | None = None
    nfe: int = 0  # network evaluations (each on the whole batch, doubled by guidance)

    def save(self, path, nrow: int | None = None, overwrite: bool = False) -> Path:
        """The image grid as PNG or JPEG (by the file's extension); see `ditlab.io.save_grid`."""
        return save_grid(self.images, path, nrow=nrow, overwrite=overwrite)


def check_settings(sampler=None, cfg_scale=4.0, steps: int = 50, seed: int = 0) -> tuple:
    """(Sampler or diffusers scheduler, Guidance), every value checked against its allowed range: the CLI calls
    this before it loads the model."""
    integer("steps", steps, min=1, max=1000)
    integer("seed", seed)
    sampler = sampler if isinstance(sampler, Sampler) or is_scheduler(sampler) else Sampler(sampler)
    return sampler, cfg_scale if isinstance(cfg_scale, Guidance) else Guidance(cfg_scale)


def sample(model, labels, *, steps: int = 50, sampler=None, cfg_scale: float | Guidance = 4.0, seed: int = 0,
           device=None, progress: bool = True, trajectory: bool = False, vae=None) -> Samples:
    """Sample one image per label (reproducible per seed).

    model: a DiT, or a checkpoint path (ditlab run folder/file, official release or train checkpoint).
    labels: ids or class names, at most MAX_IMAGES (sampled in batches of BATCH); steps: sampling steps (≤ 1000).
    sampler: a name, `Sampler(name, eta=, time_shift=, diffusion_form=)` or a diffusers scheduler; default the
    first that fits the model. DDPM models: "ddim" (eta=0 deterministic), "ddpm" (ancestral, learned Σ); flow
    models: ODE "euler", "heun" (2 evaluations per step), "dopri5" (adaptive, torchdiffeq), or SDE "sde-euler"
    (Euler–Maruyama), "sde-heun". cfg_scale: classifier-free guidance scale in [0, 100] (1 = none), or
    `Guidance(scale, channels=3, interval=(t_lo, t_hi))`. vae: a diffusers AutoencoderKL to decode latents
    (x / its `config.scaling_factor`: 0.18215 for the SD VAE). Samples that overflow (NaN or inf) raise
    FloatingPointError instead of being returned.
    """
    sampler, guidance = check_settings(sampler, cfg_scale, steps, seed)
    if not isinstance(model, torch.nn.Module):
        model = load_model(model, device=device or "cpu")
    sampler = fit(model, sampler, guidance, trajectory)
    y = parse_labels(labels, model.config.num_classes, classes_of(model))
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    batches = y.to(device).split(BATCH)
    if trajectory and len(batches) > 1:
        raise ValueError(f"trajectory=True records at most {BATCH} images, got {len(y)} labels")
    model, gen, parts = model.eval(), torch.Generator(device).manual_seed(seed), []
    bar = tqdm(batches, disable=not progress or len(batches) == 1, desc=_batch_note(model, guidance))
    with torch.no_grad():
        for yb in bar:
            parts.append(_sample_batch(model, yb, sampler, guidance, steps, gen, progress and len(batches) == 1,
                                       trajectory))
    x = torch.cat([p[0] for p in parts])
    latents = None
    if vae is not None:
        with torch.no_grad():
            latents, x = x, vae.decode(x.to(vae.dtype) / vae.config.scaling_factor).sample.float()
    if not torch.isfinite(x).all():
        raise FloatingPointError(f"sampling gave NaN or infinite values (sampler {sampler}, {guidance}, steps "
                                 f"{steps}): the settings overflow; lower cfg_scale, eta or time_shift")
    return Samples(images=x.clamp(-1, 1).cpu(), labels=y.cpu(), trajectory=parts[0][1], latents=latents,
                   nfe=parts[-1][2])


def _sample_batch(model, y, sampler, guidance, steps, gen, progress, trajectory):
    """One batch of labels y (n,) -> (x (n, C, H, W), trajectory, network evaluations)."""
    c, guided = model.config, Guided(model, y, guidance)
    z = torch.randn((len(y), c.in_channels, *c.hw), generator=gen, device=y.device)
    if is_scheduler(sampler):
        x, traj = sample_with_scheduler(model, sampler, z, y, steps, cfg_scale=guidance.scale,
                                        guidance_channels=guidance.channels, generator=gen, progress=progress,
                                        trajectory=trajectory)
        return x, traj or [], len(sampler.timesteps)
    run = sample_flow if is_flow(model) else sample_ddpm
    x, traj = run(guided, z, sampler, steps, gen, progress, trajectory)
    return x, traj, guided.nfe


def _batch_note(model, guidance) -> str:
    """A rough estimate of one batch's activation memory, for the progress bar over batches."""
    c = model.config
    per_image = c.num_tokens * c.hidden_size * 4 * 16 * (2 if guidance.scale != 1 else 1)  # bytes, float32
    return f"batches of {BATCH} (~{BATCH * per_image / 2**30:.1f} GiB of activations each)"
