"""Plots of the diffusion process and of training: noise schedules, the learned-Σ range, the forward noising,
sampling trajectories, loss curves and the live training dashboard (paper §3.1, §4).

Like `ditlab.teach.viz`, every function returns a `matplotlib.figure.Figure` built without pyplot; the shared
drawing helpers come from there.
"""
import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..io import make_grid
from .viz import _figure, _image_table, _numpy, _off

LOSS_LABELS = {"loss": "loss = L_simple + L_vlb", "mse": "mse = L_simple (ε)", "vb": "vb = L_vlb (Σ)"}


def _log_columns(log_rows, keys=("loss", "mse", "vb")) -> dict[str, np.ndarray]:
    """Log rows (dicts, e.g. `train(...)["log"]` or csv.DictReader rows of log.csv) -> float arrays per key."""
    if isinstance(log_rows, (str, bytes)) or not isinstance(log_rows, Sequence):
        raise TypeError(f"log_rows must be a list of dicts with keys step, {', '.join(keys)}; "
                        f"got {type(log_rows).__name__}")
    missing = [k for k in ("step", "loss") if log_rows and k not in log_rows[0]]
    if missing:
        raise ValueError(f"log_rows must have the keys step and loss (mse, vb optional); missing {missing}")
    return {k: np.array([float(r[k]) for r in log_rows], dtype=np.float64)
            for k in ("step", *keys) if not log_rows or k in log_rows[0]}


def _draw_loss(ax, log_rows, keys=("loss", "mse", "vb")):
    cols = _log_columns(log_rows, keys)
    for k in keys:
        if k in cols and (cols[k] > 0).any():  # log scale: non-positive values (vb = 0 without learned Σ) dropped
            ax.plot(cols["step"], np.where(cols[k] > 0, cols[k], np.nan), lw=1.2, label=LOSS_LABELS.get(k, k),
                    marker="o" if len(cols["step"]) < 3 else None, ms=3)  # a point is visible before a line is
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (per image, mean over pixels)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=8)


def loss_curve(log_rows, keys: Sequence[str] = ("loss", "mse", "vb"), title: str | None = None) -> Figure:
    """Training loss against step, log-scale y: one line per key present in the rows (default: the hybrid
    loss, its ε-MSE part L_simple and its VLB part L_vlb). log_rows: dicts with step, loss (mse, vb)."""
    if not log_rows:
        raise ValueError("log_rows must be a non-empty list of dicts with keys step, loss (mse, vb optional)")
    fig, (ax,) = _figure(1, 1, (5.5, 3.6))
    _draw_loss(ax, log_rows, tuple(keys))
    ax.set_title(title or f"training loss ({int(float(log_rows[-1]['step']))} steps)")
    return fig


def schedule_plot(diffusion, labels: str | Sequence[str] | None = None) -> Figure:
    """ᾱ_t, SNR(t) = ᾱ_t/(1−ᾱ_t) (log scale) and β_t (log scale) against t, one line per diffusion.

    diffusion: a `GaussianDiffusion` (or respaced one: plotted at its original timesteps), or a list of them,
    or a dict {label: diffusion}, e.g.
    {"linear": create_diffusion(), "cosine": create_diffusion(noise_schedule="cosine")}."""
    if isinstance(diffusion, dict):
        names, ds = list(diffusion), list(diffusion.values())
    else:
        ds = list(diffusion) if isinstance(diffusion, (list, tuple)) else [diffusion]
        names = None
    if not ds or not all(hasattr(d, "alphas_cumprod") and hasattr(d, "timestep_map") for d in ds):
        raise TypeError("diffusion must be a GaussianDiffusion (ditlab.create_diffusion()), a list or a dict of them")
    if names is None:
        names = [labels] if isinstance(labels, str) else list(labels or [f"T = {d.num_timesteps}" for d in ds])
    if len(names) != len(ds):
        raise ValueError(f"labels must have one entry per diffusion ({len(ds)}), got {len(names)}")
    items = list(zip(names, ds))
    fig, axes = _figure(1, 3, (3.8, 3.3))
    for name, d in items:
        t = _numpy(d.timestep_map)
        ac = d.alphas_cumprod.numpy()
        axes[0].plot(t, ac, label=name)
        axes[1].plot(t, ac / (1 - ac), label=name)
        axes[2].plot(t, d.betas.numpy(), label=name)
    titles = ("ᾱ_t: signal kept in x_t", "SNR(t) = ᾱ_t / (1 − ᾱ_t)", "β_t: noise added per step")
    for ax, title, log in zip(axes, titles, (False, True, True)):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("timestep t")
        if log:
            ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def variance_range_plot(diffusion, zoom: int = 50) -> Figure:
    """The range the learned Σ_θ interpolates in (IDDPM eq. 15): log β_t (upper bound) and log β̃_t, the posterior
    variance (lower bound), against t, shaded between; right: the first `zoom` steps, where they differ most."""
    if not (hasattr(diffusion, "log_betas") and hasattr(diffusion, "posterior_log_variance_clipped")):
        raise TypeError("diffusion must be a GaussianDiffusion (ditlab.create_diffusion())")
    if not isinstance(zoom, int) or not 2 <= zoom <= diffusion.num_timesteps:
        raise ValueError(f"zoom must be an int in [2, {diffusion.num_timesteps}], got {zoom!r}")
    t = _numpy(diffusion.timestep_map)
    hi, lo = diffusion.log_betas.numpy(), diffusion.posterior_log_variance_clipped.numpy()
    fig, axes = _figure(1, 2, (4.6, 3.4))
    for ax, n in zip(axes, (len(t), zoom)):
        ax.fill_between(t[:n], lo[:n], hi[:n], color="tab:purple", alpha=0.2, label="log Σ_θ lies here")
        ax.plot(t[:n], hi[:n], color="tab:red", label="log β_t  (v = +1)")
        ax.plot(t[:n], lo[:n], color="tab:blue", label="log β̃_t  (v = −1)")
        ax.set_xlabel("timestep t")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("log variance of p(x_{t−1} | x_t)")
    axes[0].set_title("the learned-Σ range", fontsize=10)
    axes[1].set_title(f"the first {zoom} steps", fontsize=10)
    axes[0].legend(fontsize=8)
    return fig


def noising_strip(x0, diffusion, timesteps: Sequence[int] = (0, 100, 250, 500, 750, 999), noise=None,
                  seed: int = 0, size: float = 1.3) -> Figure:
    """The forward process q(x_t | x_0) on images: row i is image i, column j is x_t at t = timesteps[j],
    made with one noise draw per image, x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε (shown clipped to [-1, 1]).

    x0: (N, C, H, W) or (C, H, W) in [-1, 1]; noise: like x0 (default N(0, I) from `seed`)."""
    x0 = torch.as_tensor(_numpy(x0))
    x0 = x0[None] if x0.ndim == 3 else x0
    if x0.ndim != 4:
        raise ValueError(f"x0 must have shape (N, C, H, W) or (C, H, W), got {tuple(x0.shape)}")
    ts = [int(t) for t in timesteps]
    T = diffusion.num_timesteps
    if not ts or any(not 0 <= t < T for t in ts):
        raise ValueError(f"timesteps must be a non-empty list of ints in [0, {T}), got {list(timesteps)}")
    if noise is None:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    noise = torch.as_tensor(_numpy(noise))
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    cols = [diffusion.q_sample(x0, torch.full((len(x0),), t), noise) for t in ts]  # each (N, C, H, W)
    ac = diffusion.alphas_cumprod
    labels = [f"t = {int(diffusion.timestep_map[t])}\nᾱ = {float(ac[t]):.3f}" for t in ts]
    return _image_table([torch.stack([c[i] for c in cols]) for i in range(len(x0))], None, labels, size)


def trajectory_strip(trajectory, every: int | None = None, index: int | Sequence[int] = 0, max_cols: int = 10,
                     size: float = 1.3) -> Figure:
    """A sampling trajectory: for each chosen image, a row of x_t (the sampler's input at step t) and a row of
    the model's predicted clean image x̂_0, at every `every`-th step (default: about `max_cols` columns)
    and always the last step.

    trajectory: list of dict(t, x_t, pred_x0) with (N, C, H, W) tensors, as `sample(..., trajectory=True)`
    returns in `Samples.trajectory`; index: which image(s) of the batch."""
    if not trajectory or not all(isinstance(s, dict) and {"t", "x_t", "pred_x0"} <= set(s) for s in trajectory):
        raise ValueError("trajectory must be a non-empty list of dicts with keys t, x_t, pred_x0 "
                         "(ditlab.sample(..., trajectory=True).trajectory)")
    n = len(trajectory)
    if every is None:
        every = max(1, math.ceil((n - 1) / max(1, max_cols - 1)))
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive int, got {every!r}")
    steps = sorted(set(range(0, n, every)) | {n - 1})
    idx = [index] if isinstance(index, int) else list(index)
    batch = len(trajectory[0]["x_t"])
    if not idx or any(not 0 <= i < batch for i in idx):
        raise ValueError(f"index must be an int or ints in [0, {batch}), got {index!r}")
    rows, labels = [], []
    for i in idx:
        rows.append(torch.stack([torch.as_tensor(_numpy(trajectory[s]["x_t"][i])) for s in steps]))
        rows.append(torch.stack([torch.as_tensor(_numpy(trajectory[s]["pred_x0"][i])) for s in steps]))
        labels += [f"x_t  (#{i})", f"x̂_0  (#{i})"]
    return _image_table(rows, labels, [f"t = {int(trajectory[s]['t'])}" for s in steps], size)


def training_dashboard(log_rows, images=None, step: int | None = None, total_steps: int | None = None,
                       nrow: int | None = None, title: str | None = None) -> Figure:
    """Left: the loss curve so far; right: the latest EMA sample grid (N, C, H, W) in [-1, 1] (or a
    placeholder). Redraw it from `train(..., callback=...)` to watch a run live (notebook 09)."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_img = fig.subplots(1, 2, width_ratios=[1.3, 1])
    if log_rows:
        _draw_loss(ax_loss, log_rows)
        last = log_rows[-1]
        info = f"step {int(float(last['step']))}{f' / {total_steps}' if total_steps else ''}"
        info += f": loss {float(last['loss']):.4f}"
        if "img_per_s" in last:
            info += f", {float(last['img_per_s']):.0f} img/s"
        ax_loss.set_title(info, fontsize=10)
    else:
        ax_loss.text(0.5, 0.5, "waiting for the first log row ...", ha="center", va="center")
        _off(ax_loss)
    if images is not None:
        a = _numpy(images)
        if a.ndim != 4 or a.shape[1] not in (1, 3):
            raise ValueError(f"images must have shape (N, C, H, W) with C = 1 or 3, got {tuple(a.shape)}")
        grid = make_grid(torch.from_numpy(a), nrow=nrow).numpy()  # (H', W', C) uint8
        grid[make_grid(torch.ones_like(torch.from_numpy(a)), nrow=nrow).numpy() == 0] = 96  # gray gaps between images
        ax_img.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
        ax_img.set_title(f"EMA samples{f' at step {step}' if step is not None else ''}", fontsize=10)
    else:
        ax_img.text(0.5, 0.5, "no samples yet", ha="center", va="center")
    _off(ax_img)
    if title:
        fig.suptitle(title)
    return fig
