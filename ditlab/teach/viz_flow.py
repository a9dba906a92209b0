"""Figures for notebook 07 (flow matching): the three interpolant paths, where training puts its timesteps and
where sampling puts its steps, and one sample at several numbers of function evaluations (NFE)."""
import torch
from matplotlib.figure import Figure

from ..diffusion.flow import create_flow, time_shift
from ..diffusion.interpolants import PATHS, get_path
from ..sampling import sample
from . import viz


def paths_figure() -> Figure:
    """α_t (signal) and σ_t (noise) of the Linear, GVP and VP paths, t = 0 noise -> t = 1 data (SiT's convention)."""
    t = torch.linspace(0.0, 1.0, 201)
    fig, axes = viz._figure(1, len(PATHS), (3.2, 2.6))
    for ax, name in zip(axes, PATHS):
        p = get_path(name)
        ax.plot(t, p.alpha(t)[0], label="α_t (data)")
        ax.plot(t, p.sigma(t)[0], label="σ_t (noise)")
        ax.set(title=name, xlabel="t  (0 = noise, 1 = data)", ylim=(-0.05, 1.05))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def timesteps_figure(n: int = 20000, steps: int = 10, shift: float = 3.0, seed: int = 0) -> Figure:
    """Left: training times, uniform vs logit-normal (SD3). Right: a `steps`-step sampling grid, plain and with
    SD3's time shift."""
    g = torch.Generator().manual_seed(seed)
    fig, (ax1, ax2) = viz._figure(1, 2, (4.2, 2.8))
    for kind in ("uniform", "logit-normal"):
        ax1.hist(create_flow(t_sampling=kind).sample_t(n, g).numpy(), bins=50, range=(0, 1), alpha=0.6,
                 density=True, label=kind)
    ax1.set(title="training times t", xlabel="t  (0 = noise, 1 = data)", ylabel="density")
    ax1.legend(fontsize=8)
    grid = torch.linspace(0, 1, steps + 1)
    for y, (label, g_) in enumerate([("plain", grid), (f"shift {shift:g}", time_shift(grid, shift))]):
        ax2.plot(g_.numpy(), [y] * len(g_), "|-", ms=14, label=label)
    ax2.set(title=f"{steps} sampling steps", xlabel="t", yticks=[0, 1], yticklabels=["plain", f"shift {shift:g}"],
            ylim=(-0.5, 1.5))
    return fig


def nfe_rows(model, labels, nfes=(2, 4, 8, 16), sampler=None, cfg_scale: float = 4.0, seed: int = 0) -> Figure:
    """The same labels and noise sampled with each number of function evaluations, one row each."""
    rows, names = [], []
    for nfe in nfes:
        s = sample(model, list(labels), steps=nfe // (2 if sampler == "heun" else 1), sampler=sampler,
                   cfg_scale=cfg_scale, seed=seed, progress=False)
        rows.append(s.images)
        names.append(f"NFE {s.nfe}")
    return viz.image_rows(rows, names, size=1.0, title=f"{getattr(model, 'name', 'model')}: same noise, seed {seed}, "
                                                       f"guidance {cfg_scale:g}")
