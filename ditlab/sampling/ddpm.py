"""DDPM (ancestral, learned Σ) and DDIM sampling of a DiT (paper §3.1) via the Gaussian diffusion respaced to
`steps` (`ditlab.diffusion.create_diffusion`)."""
import torch

from ..diffusion import create_diffusion
from .guidance import Guided
from .settings import Sampler


def sample_ddpm(guided: Guided, z: torch.Tensor, sampler: Sampler, steps: int, generator, progress: bool,
                trajectory: bool):
    """Noise z (N, C, H, W) -> (x0 (N, C, H, W), trajectory: per step dict(t, x_t, pred_x0), CPU)."""
    n = len(z)
    diffusion = create_diffusion(str(steps), learn_sigma=guided.model.config.learn_sigma)
    if sampler.name == "ddpm":
        loop = diffusion.p_sample_loop_progressive(guided, noise=guided.batch(z), progress=progress,
                                                   generator=generator)
    else:
        loop = diffusion.ddim_sample_loop_progressive(guided, noise=guided.batch(z), progress=progress,
                                                      generator=generator, eta=sampler.eta)
    traj, x = [], guided.batch(z)
    for i, out in enumerate(loop):
        if trajectory:  # x_t is the input of this step, pred_x0 the model's guess of the clean image
            t = int(diffusion.timestep_map[diffusion.num_timesteps - 1 - i])
            traj.append(dict(t=t, x_t=x[:n].cpu(), pred_x0=out["pred_xstart"][:n].cpu()))
        x = out["sample"]
    return x[:n], traj
