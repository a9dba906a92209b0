"""Figures for notebook 08 (latent diffusion): what a VAE's latent channels look like, and the pixel-vs-latent
comparison at equal compute. Plain functions (tensors / rows in, a matplotlib Figure out)."""
from collections.abc import Sequence

import torch
from matplotlib.figure import Figure


def latent_channels(images: torch.Tensor, latents: torch.Tensor, recon: torch.Tensor | None = None,
                    n: int = 4) -> Figure:
    """One row per image: the image (N, c, H, W) in [-1, 1], each of its latent channels (N, C, h, w) on its own
    colour scale (blue < 0 < red) and, if given, the reconstruction. `n`: rows shown."""
    if images.ndim != 4 or latents.ndim != 4 or len(images) != len(latents):
        raise ValueError(f"images (N, c, H, W) and latents (N, C, h, w) with the same N, got {tuple(images.shape)}, "
                         f"{tuple(latents.shape)}")
    n, c = min(n, len(images)), latents.shape[1]
    cols = 1 + c + (recon is not None)
    fig = Figure(figsize=(1.3 * cols, 1.3 * n + 0.5), layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    lim = latents[:n].abs().amax().item() or 1.0
    for i in range(n):
        panels = [("image", images[i])] + [(f"channel {k}", latents[i, k]) for k in range(c)]
        panels += [("decoded", recon[i])] if recon is not None else []
        for j, (title, x) in enumerate(panels):
            ax = axes[i, j]
            if x.ndim == 3:  # an image (c, H, W)
                img = ((x.float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            else:  # one latent channel (h, w)
                ax.imshow(x.float().numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
    h, w = latents.shape[-2:]
    fig.suptitle(f"{tuple(images.shape[1:])} image → {c}×{h}×{w} latent", fontsize=10)
    return fig


def equal_compute_bars(rows: Sequence[dict]) -> Figure:
    """Bars of guided / unguided judge accuracy and of wall time for runs `rows` (dicts with keys name,
    accuracy, accuracy_unguided, seconds, chance, real_accuracy)."""
    fig = Figure(figsize=(9, 3), layout="constrained")
    ax_acc, ax_time = fig.subplots(1, 2, width_ratios=(2, 1))
    names = [r["name"] for r in rows]
    x = torch.arange(len(rows)).float()
    for k, (key, label) in enumerate((("accuracy", "guided"), ("accuracy_unguided", "unguided"))):
        ax_acc.bar(x + (k - 0.5) * 0.38, [r[key] for r in rows], 0.38, label=label)
    ax_acc.axhline(rows[0]["chance"], color="gray", ls=":", lw=1, label="chance")
    ax_acc.axhline(rows[0]["real_accuracy"], color="k", ls="--", lw=1, label="real images")
    ax_acc.set_xticks(x.tolist(), names), ax_acc.set_ylim(0, 1.05), ax_acc.set_ylabel("judge accuracy")
    ax_acc.legend(fontsize=8, loc="lower right"), ax_acc.set_title("samples recognised as their class", fontsize=10)
    ax_time.bar(names, [r["seconds"] for r in rows], color="tab:gray")
    ax_time.set_ylabel("seconds"), ax_time.set_title("training time (wall)", fontsize=10)
    return fig
