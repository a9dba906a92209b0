"""What the notebooks' widgets do (00 tour, the scaling explorer, the sampling playground), as plain functions.

They take plain inputs and return a Figure, a tensor, a dict or `Samples`, so tests and scripts call them
without a browser; `ditlab.teach.widgets` wires them to ipywidgets. Models come from `get_model`: a shipped
checkpoint, else a tiny DiT trained here once and cached.
"""
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from ..checkpoint import load_model
from ..data import load_dataset
from ..eval import draw_fig8, estimate_flops, estimate_params, gflops_text, paper_table
from ..eval.table4 import PATCH_MARKERS, SIZE_COLORS
from ..io import default_cache_dir
from ..model import PAPER_SIZES, get_config
from ..sampling import parse_labels, sample, samplers_for
from ..training import train
from ..zoo import list_pretrained, load_pretrained
from . import viz

# ---------------------------------------------------------------- models: shipped checkpoints or a fallback

DEFAULT_MODEL = "digits-p4"
WIDGET_DPI = 100  # the widgets render figures at this dpi; scrubber_figure is laid out in pixels at it
PATCH_NAMES = ("digits-p2", "digits-p4", "digits-p8")
# the stand-in for a missing checkpoint "<data>-p<P>": a 3-block DiT-Mi (1 M params) on the built-in digits at 16 px.
# (Width 128: at p = 8 each token predicts 2·8·8 = 128 numbers, and a 64-wide stand-in failed to learn.)
FALLBACK = dict(objective="ddpm", warmup_steps=0, model_args=dict(depth=3), data="digits", image_size=16,
                batch_size=32, lr=2e-3, ema_decay=0.99)
FALLBACK_STEPS = 1000  # 1-3 minutes on a laptop CPU, once; then cached
_MODELS: dict = {}


def model_names() -> list[str]:
    """Shipped checkpoints (`ditlab.zoo.list_pretrained()`), else the names `get_model` trains stand-ins for."""
    return list_pretrained() or list(PATCH_NAMES)


def get_model(name=DEFAULT_MODEL, fallback_steps: int | None = None, cache_dir=None, verbose: bool = True):
    """A DiT in eval mode by name: the shipped checkpoint `ditlab.zoo.load_pretrained(name)` if there is one,
    else a tiny stand-in trained on the built-in digits at 16 px with patch size P of "<data>-p<P>"
    (`fallback_steps`, default 1000; cached in `$DITLAB_CACHE/widgets/`). A DiT passed in is returned as is.
    Loaded models are kept in memory; `model.name` and `model.card` say what it is."""
    if isinstance(name, torch.nn.Module):
        return name
    if not isinstance(name, str):
        raise TypeError(f"name must be a checkpoint name like 'digits-p4' or a DiT, got {type(name).__name__}")
    steps = FALLBACK_STEPS if fallback_steps is None else fallback_steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"fallback_steps must be a positive int, got {fallback_steps!r}")
    shipped = name in list_pretrained()
    key = (name, None if shipped else steps, str(cache_dir))
    if key in _MODELS:
        return _MODELS[key]
    if shipped:
        model = load_pretrained(name)
    else:
        m = re.fullmatch(r"([a-z_]+)-p(\d+)", name)
        if not m or 16 % int(m.group(2)):
            raise ValueError(f"unknown model {name!r}: not shipped ({list_pretrained() or 'no checkpoints found'}) "
                             "and not of the form '<data>-p<P>' with P in 1, 2, 4, 8, 16 for a stand-in")
        model = _train_fallback(name, int(m.group(2)), steps, cache_dir, verbose)
    model.name = name
    _MODELS[key] = model
    return model


def _train_fallback(name: str, patch: int, steps: int, cache_dir, verbose: bool):
    recipe = dict(FALLBACK, model=f"DiT-Mi/{patch}", steps=steps)
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    run = default_cache_dir(cache_dir) / "widgets" / f"{name}-{key}"
    if not (run / "ema.safetensors").exists():
        if verbose:
            print(f"note: no shipped checkpoint {name!r}; training a tiny stand-in ({recipe['model']}, 16 px digits, "
                  f"{steps} steps) once, cached in {run}")
        run.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=run.parent, prefix=f".{name}-"))
        try:
            train(**recipe, out_dir=str(tmp), log_every=max(1, steps // 4), ckpt_every=steps, sample_every=0,
                  progress=verbose, verdict=False)
            if not (run / "ema.safetensors").exists():
                shutil.rmtree(run, ignore_errors=True)
                os.replace(tmp, run)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    model = load_model(run).eval()
    model.card = dict(name=name, stand_in=True, recipe=recipe, note="trained by ditlab.teach.explore.get_model")
    return model


def model_info(model) -> dict:
    """name, image size, patch size, tokens, params, Gflops and whether it is a stand-in, of a loaded DiT."""
    c = model.config
    return dict(name=getattr(model, "name", "model"), image_size=c.hw[0], patch=c.patch_size, tokens=c.num_tokens,
                params=estimate_params(c), gflops=estimate_flops(c) / 1e9,
                stand_in=bool(getattr(model, "card", {}).get("stand_in")))


# ---------------------------------------------------------------- compute: params, tokens, Gflops (§4, Table 4)

def scaling_point(size: str = "XL", patch: int = 2, image_size: int = 256) -> dict:
    """Closed-form params, tokens and Gflops of DiT-<size>/<patch> on image_size px images (latents image_size/8),
    with the paper's Table 4 Gflops and FID-50K where it has the row."""
    if size not in PAPER_SIZES:
        raise ValueError(f"size must be one of {list(PAPER_SIZES)}, got {size!r}")
    if not isinstance(patch, int) or isinstance(patch, bool) or patch < 1:
        raise ValueError(f"patch must be a positive int (the paper uses 2, 4, 8), got {patch!r}")
    if not isinstance(image_size, int) or image_size < 8 or image_size % (8 * patch):
        raise ValueError(f"image_size must be a multiple of 8·patch = {8 * patch} (the VAE downsamples by 8), "
                         f"got {image_size!r}")
    name = f"DiT-{size}/{patch}"
    cfg = get_config(name, input_size=image_size // 8)
    row = {r["model"]: r for r in paper_table("adaLN-Zero", image_size)}.get(name, {})
    return dict(model=name, image_size=image_size, latent_size=image_size // 8, tokens=cfg.num_tokens,
                params=estimate_params(cfg), gflops=estimate_flops(cfg) / 1e9,
                paper_gflops=row.get("gflops"), paper_fid=row.get("fid50k_400k"))


def scaling_figure(size: str = "XL", patch: int = 2, image_size: int = 256, width: float = 9.4) -> Figure:
    """Left: the paper's FID vs Gflops points (Table 4, Fig. 8) with the chosen config's Gflops marked on the
    trend line. Right: params vs Gflops of the 12 configs at image_size, the chosen one highlighted.
    `width`: of the whole figure, inches (940 px at the widgets' 100 dpi)."""
    pt = scaling_point(size, patch, image_size)
    fig, (ax1, ax2) = viz._figure(1, 2, (width / 2, 0.46 * width))
    draw_fig8(ax1, pt, legend=False)
    fig.legend(*ax1.get_legend_handles_labels(), loc="outside lower center", ncol=5, fontsize=9, handlelength=1.5,
               columnspacing=1.0)  # beneath both panels: the sizes' colours and the patches' markers are shared
    for s in PAPER_SIZES:
        pts = [scaling_point(s, p, image_size) for p in (8, 4, 2) if image_size % (8 * p) == 0]
        ax2.plot([q["gflops"] for q in pts], [q["params"] / 1e6 for q in pts], "-", color=SIZE_COLORS[s], lw=1)
        for q, p in zip(pts, (8, 4, 2)):
            ax2.scatter(q["gflops"], q["params"] / 1e6, color=SIZE_COLORS[s], marker=PATCH_MARKERS[p], s=40)
    ax2.scatter(pt["gflops"], pt["params"] / 1e6, s=300, facecolors="none", edgecolors="black", lw=2, zorder=4)
    ax2.annotate(f"{pt['model']}\n{pt['tokens']} tokens\n{pt['params'] / 1e6:.0f} M params\n"
                 f"{gflops_text(pt['gflops'])} Gflops",
                 (pt["gflops"], pt["params"] / 1e6), xytext=(8, 12 if pt["params"] < 1e8 else -52),
                 textcoords="offset points", fontsize=9)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_yticks([30, 100, 300, 700])
    ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax2.yaxis.set_minor_formatter(NullFormatter())
    ax2.set_xlabel("Gflops per forward pass")
    ax2.set_ylabel("parameters (M)")
    ax2.set_title(f"{image_size} px: smaller patches add Gflops, not parameters", fontsize=10)
    ax2.grid(True, which="major", alpha=0.3)
    return fig


def fid_vs_gflops(highlight: str | None = None) -> Figure:
    """The paper's claim in one figure (Fig. 8, Table 4): FID-50K falls as transformer Gflops grow, whatever
    mix of model size and patch size gives them. `highlight`: a config name, e.g. "DiT-XL/2", marked."""
    fig, (ax,) = viz._figure(1, 1, (6.0, 4.4))
    pt = None
    if highlight is not None:
        size, _, p = str(highlight).removeprefix("DiT-").partition("/")
        pt = scaling_point(size, int(p) if p.isdigit() else p)
    draw_fig8(ax, pt)
    return fig


def patch_overlay(image, patch: int = 2, latent_size: int | None = None, size: float = 3.6) -> Figure:
    """A (C, H, W) image in [-1, 1], resized to latent_size (default: as is), with its p×p token grid drawn
    over it: what each of the T = (latent_size/p)² tokens of the transformer covers."""
    x = torch.as_tensor(viz._numpy(image))
    if x.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W), got {tuple(x.shape)}")
    if latent_size is not None:
        x = torch.nn.functional.interpolate(x[None], size=(latent_size, latent_size), mode="bilinear",
                                            antialias=True, align_corners=False)[0]
    return viz.patch_grid(x.clamp(-1, 1), patch, size=size)


# ---------------------------------------------------------------- sampling (§3.1): grids, trajectories, guidance

def generate(model=DEFAULT_MODEL, labels=(0,), cfg_scale: float = 4.0, steps: int = 25, sampler: str | None = None,
             seed: int = 0, trajectory: bool = False, progress: bool = False, **model_kw):
    """`ditlab.sample` on `get_model(model)` -> `Samples` (images (N, C, H, W) in [-1, 1], labels, trajectory).
    sampler None: the model's default (DDIM, or Euler for a flow-matching model; `sampler_names`)."""
    m = get_model(model, **model_kw)
    return sample(m, list(labels), steps=steps, sampler=sampler, cfg_scale=cfg_scale, seed=seed,
                  progress=progress, trajectory=trajectory)


def sampler_names(model, trajectory: bool = False) -> list[str]:
    """The samplers that fit a model (DDPM's, or the flow ODE/SDE ones), the default first; `trajectory`: only
    those that record a denoising trajectory."""
    names = list(samplers_for(model))
    return [n for n in names if n in ("ddim", "ddpm", "euler", "heun")] if trajectory else names


def _class_names(model) -> list[str]:
    n = model.config.num_classes
    names = getattr(model, "classes", None) or [str(i) for i in range(n)]
    return [c if isinstance(c, str) else c[0] for c in names]


def _labels(model, label, n: int) -> list[int]:
    """n labels: every class in turn (label None), or n times one class (id or name)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if label is None:
        return [i % model.config.num_classes for i in range(n)]
    return parse_labels([label], model.config.num_classes, getattr(model, "classes", None)).tolist() * n


def sample_grid(model=DEFAULT_MODEL, label=None, n: int = 8, cfg_scale: float = 4.0, steps: int = 25,
                sampler: str | None = None, seed: int = 0, nrow: int | None = None, size: float = 1.6,
                progress: bool = False, **model_kw) -> Figure:
    """n samples of one class (`label`: id or name) or of every class in turn (None), titled with the class.
    `nrow` images per row (default: one column per class, at most 10), `size` inches per image."""
    m = get_model(model, **model_kw)
    out = generate(m, _labels(m, label, n), cfg_scale, steps, sampler, seed, progress=progress)
    names = _class_names(m)
    nrow = grid_columns(m) if nrow is None else nrow
    fig = viz.show_images(out.images, nrow=min(nrow, n), titles=[names[i] for i in out.labels], size=size)
    fig.suptitle(f"{getattr(m, 'name', 'model')}: {sampler or samplers_for(m)[0]} {steps} steps, cfg {cfg_scale:g}, "
                 f"seed {seed}", fontsize=10)
    return fig


def grid_columns(model) -> int:
    """Columns of a sample grid: one per class (each column one class when every class is drawn), at most 10."""
    return min(get_model(model).config.num_classes, 10)


def denoise_frames(model=DEFAULT_MODEL, label=0, steps: int = 25, sampler: str | None = None, cfg_scale: float = 4.0,
                   seed: int = 0, progress: bool = False, **model_kw) -> list[dict]:
    """The sampling trajectory of one image: per step dict(t, x_t (1, C, H, W), pred_x0 (1, C, H, W)), from
    pure noise (t = 999) to the last step; the sample itself is the last pred_x0."""
    m = get_model(model, **model_kw)
    return generate(m, _labels(m, label, 1), cfg_scale, steps, sampler, seed, trajectory=True,
                    progress=progress).trajectory


def scrubber_figure(trajectory, index: int = 0, image: int = 0, scale: int | None = None,
                    title: bool = True) -> Figure:
    """x_t (the sampler's input at step `index`) and the model's predicted clean image x̂_0 at that step, each
    drawn at a whole multiple `scale` of its pixels (default: about 176 px wide) so that saved at the figure's
    dpi it is crisp. `title`: "step i+1 of K" above (the widget writes it beside its slider instead)."""
    if not trajectory or not all(isinstance(s, dict) and {"t", "x_t", "pred_x0"} <= set(s) for s in trajectory):
        raise ValueError("trajectory must be a non-empty list of dicts with keys t, x_t, pred_x0 (denoise_frames)")
    if not isinstance(index, int) or not -len(trajectory) <= index < len(trajectory):
        raise ValueError(f"index must be an int in [0, {len(trajectory)}), got {index!r}")
    s = trajectory[index]
    h, w = s["x_t"].shape[-2:]
    k = max(1, 176 // max(h, w)) if scale is None else scale
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"scale must be a positive int (pixels per image pixel), got {scale!r}")
    pad, gap, top = 8, 24, 28 + (26 if title else 0)  # in pixels
    width, height = 2 * k * w + gap + 2 * pad, k * h + top + pad
    fig = Figure(figsize=(width / WIDGET_DPI, height / WIDGET_DPI), dpi=WIDGET_DPI)
    for j, (key, label) in enumerate((("x_t", f"x_t, t = {s['t']:.3g}"), ("pred_x0", "predicted x̂_0"))):
        ax = fig.add_axes(((pad + j * (k * w + gap)) / width, pad / height, k * w / width, k * h / height))
        viz._imshow(ax, s[key][image])  # axes of exactly k·w × k·h pixels: every image pixel a k×k block
        ax.set_axis_off()  # no frame over the border pixels
        ax.set_title(label, fontsize=10)
    if title:
        fig.suptitle(f"step {index % len(trajectory) + 1} of {len(trajectory)}", fontsize=10)
    return fig


def cfg_sweep(model=DEFAULT_MODEL, label=0, scales=(1.0, 2.0, 4.0, 7.0), n: int = 6, steps: int = 25,
              sampler: str | None = None, seed: int = 0, progress: bool = False, **model_kw) -> Figure:
    """One row per guidance scale: n samples of one class from the same noise (seed), so only the scale changes."""
    m = get_model(model, **model_kw)
    if not scales:
        raise ValueError("scales must be a non-empty list of guidance scales, e.g. (1.0, 4.0)")
    labels = _labels(m, label, n)
    rows = [generate(m, labels, float(s), steps, sampler, seed, progress=progress).images for s in scales]
    name = _class_names(m)[labels[0]]
    return viz.image_rows(rows, [f"cfg {float(s):g}" for s in scales], size=1.2,
                          title=f"classifier-free guidance, class {name!r}, {sampler} {steps} steps, seed {seed}")


def compare_patch_sizes(names=PATCH_NAMES, label=None, n: int = 6, cfg_scale: float = 4.0, steps: int = 25,
                        sampler: str | None = None, seed: int = 0, fallback_steps: int | None = None) -> Figure:
    """Samples of several models (e.g. the shipped patch sizes 2, 4, 8) from the same seed, one row each,
    labelled with the model's patch size, tokens and Gflops."""
    if not names:
        raise ValueError(f"names must be a non-empty list of model names, e.g. {list(PATCH_NAMES)}")
    rows, labels = [], []
    for name in names:
        m = get_model(name, fallback_steps=fallback_steps)
        i = model_info(m)
        rows.append(generate(m, _labels(m, label, n), cfg_scale, steps, sampler, seed).images)
        labels.append(f"{i['name']}\np={i['patch']}, T={i['tokens']}\n{i['gflops']:.3f} Gflops")
    return viz.image_rows(rows, labels, size=1.2, title=f"same noise (seed {seed}), cfg {cfg_scale:g}, {steps} steps")


def example_image():
    """A built-in 'shapes' image, (3, 32, 32) in [-1, 1]."""
    x, _ = load_dataset("shapes", limit=8).get_batch([3])
    return x[0]  # (3, 32, 32)
