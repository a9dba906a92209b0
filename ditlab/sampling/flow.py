"""Sampling a flow-matching DiT (SiT §2): the ODE ("euler", "heun", "dopri5") and SDE ("sde-euler", "sde-heun")
solvers of `ditlab.diffusion.flow_sampling`, on the time grid of the model's flow, SD3-shifted."""
import torch

from ..diffusion.flow_sampling import ode_sample, ode_sample_progressive, sampling_grid, sde_sample_progressive
from .guidance import Guided
from .settings import Sampler, flow_of


def sample_flow(guided: Guided, z: torch.Tensor, sampler: Sampler, steps: int, generator, progress: bool,
                trajectory: bool):
    """Noise z (N, C, H, W) at t = 0 -> (x1 (N, C, H, W), trajectory: per step dict(t, x_t, pred_x0), CPU)."""
    flow, name, n, x = flow_of(guided.model), sampler.name, len(z), guided.batch(z)
    sde = name.startswith("sde-")
    grid = sampling_grid(flow, steps, sde=sde, diffusion_form=sampler.diffusion_form, shift=sampler.time_shift)
    if name == "dopri5":
        return ode_sample(flow, guided, x, grid, "dopri5")[:n], []
    if sde:
        loop = sde_sample_progressive(flow, guided, x, grid, name[4:], diffusion_form=sampler.diffusion_form,
                                      generator=generator, progress=progress)
    else:
        loop = ode_sample_progressive(flow, guided, x, grid, name, progress=progress)
    traj = []
    for out in loop:
        if trajectory:  # x_t and the model's guess of the data x̂1 = E[x1 | x_t] at this step
            t = torch.full((n,), out["t"], device=z.device)
            pred = flow.path.data_from_velocity(out["velocity"][:n], out["x_t"][:n], t)
            traj.append(dict(t=out["t"], x_t=out["x_t"][:n].cpu(), pred_x0=pred.cpu()))
        x = out["sample"]
    return x[:n], traj
