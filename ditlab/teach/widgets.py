"""The ipywidgets of the scaling explorer and the sampling playground: they only wire `ditlab.teach.explore`'s
plain functions to sliders and buttons.

`scaling_explorer`, `playground` and `scrubber` use only controls that exist in ipywidgets 7.7 (Colab) and 8
(JupyterLab 4); figures are rendered to PNG into an `Image` widget, errors show as a red line in an `HTML`
widget instead of a traceback, and slow work runs on a button click with a tqdm progress bar. Each returns a
`Panel` (a VBox) whose `controls` dict holds its widgets, so tests drive them headless; displayed, a Panel also
shows a static PNG of its figures beneath the widget, for readers without a kernel (GitHub, nbviewer).
"""
import html
import io
import time

import ipywidgets as W
import torch
from IPython.display import Image, display
from matplotlib.figure import Figure
from PIL import Image as PILImage

from ..model import PAPER_SIZES
from . import explore


def _png(fig: Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _error(e: Exception) -> str:
    return f'<span style="color:#c00">⚠ {type(e).__name__}: {html.escape(str(e))}</span>'


def _ok(text: str) -> str:
    return f'<span style="color:#060">{html.escape(text)}</span>'


class Panel(W.VBox):
    """A builder's VBox: `controls` names its widgets. Displayed in a notebook, it shows the live widget and
    beneath it a static PNG of its figures as they are now (its default state), which is all that GitHub and
    nbviewer can draw; the first interaction clears that preview."""

    def __init__(self, children, controls: dict):
        super().__init__(children)
        self.controls = controls

    def preview(self) -> bytes | None:
        """The panel's figures (its non-empty Image widgets) side by side as one PNG, or None."""
        figs = [PILImage.open(io.BytesIO(w.value)).convert("RGB") for w in self.controls.values()
                if isinstance(w, W.Image) and w.value]
        if not figs:
            return None
        out = PILImage.new("RGB", (sum(f.width for f in figs), max(f.height for f in figs)), "white")
        for i, f in enumerate(figs):
            out.paste(f, (sum(g.width for g in figs[:i]), 0))
        buf = io.BytesIO()
        out.save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    def _ipython_display_(self, **kwargs):
        display({"text/plain": "(an interactive widget: run the notebook to use it; a static preview follows)",
                 "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                              "model_id": self.model_id}}, raw=True)
        getattr(self, "_handle_displayed", lambda **kw: None)(**kwargs)  # ipywidgets 7 (Colab)
        png = self.preview()
        handle = display(Image(png), display_id=True) if png else None
        if handle is None:
            return

        def clear(*_):
            handle.update({"text/plain": ""}, raw=True)

        for w in self.controls.values():
            if isinstance(w, W.Button):
                w.on_click(clear)
            elif isinstance(w, W.ValueWidget) and not isinstance(w, (W.Image, W.HTML)):
                w.observe(clear, names="value")


def _busy(button, status, progress, work) -> None:
    """Run `work()` (slow, returns a status line) with the button disabled and the progress area cleared;
    an exception becomes a red status line instead of a traceback."""
    button.disabled = True
    status.value = "sampling ..."
    progress.outputs = ()
    try:
        status.value = _ok(work())
    except Exception as e:
        status.value = _error(e)
    finally:
        button.disabled = False


def scaling_explorer(size: str = "XL", patch: int = 2, image_size: int = 256, image=None):
    """Choose S/B/L/XL, patch 2/4/8 and the image size -> params, tokens, Gflops (closed form, instant) over the
    paper's points, and the token grid on an image. Returns a `Panel`."""
    size_w = W.Dropdown(options=list(PAPER_SIZES), value=size, description="size")
    patch_w = W.ToggleButtons(options=[2, 4, 8], value=patch, description="patch p")
    image_w = W.Dropdown(options=[128, 256, 512], value=image_size, description="image px")
    info, plot, grid = W.HTML(), W.Image(format="png"), W.Image(format="png")
    image = explore.example_image() if image is None else image

    def update(_=None):
        try:
            pt = explore.scaling_point(size_w.value, patch_w.value, image_w.value)
            paper = (f", paper: {pt['paper_gflops']:.2f} Gflops, FID-50K {pt['paper_fid']:.1f}"
                     if pt["paper_fid"] else ", not in the paper's Table 4")
            info.value = (f"<b>{pt['model']}</b> at {pt['image_size']} px → latent {pt['latent_size']}×"
                          f"{pt['latent_size']}×4: <b>{pt['tokens']}</b> tokens, <b>{pt['params'] / 1e6:.1f} M</b> "
                          f"parameters, <b>{pt['gflops']:.2f}</b> Gflops{paper}")
            plot.value = _png(explore.scaling_figure(size_w.value, patch_w.value, image_w.value))
            grid.value = _png(explore.patch_overlay(image, patch_w.value, pt["latent_size"]))
        except Exception as e:  # shown in the widget, not as a traceback
            info.value = _error(e)

    for w in (size_w, patch_w, image_w):
        w.observe(update, names="value")
    update()
    return Panel([W.HBox([size_w, image_w]), patch_w, info, W.HBox([plot, grid])],
                 dict(size=size_w, patch=patch_w, image_size=image_w, info=info, plot=plot, grid=grid))


def _class_options(model) -> list:
    return [(c if c == str(i) else f"{i}: {c}", i) for i, c in enumerate(explore._class_names(model))]


def _model_options(model) -> list:
    names = [(n, n) for n in explore.model_names()]
    if isinstance(model, torch.nn.Module):
        return [("my model", model)] + names
    return names if (model, model) in names else [(model, model)] + names


def _default_model() -> str:
    names = explore.model_names()
    return explore.DEFAULT_MODEL if explore.DEFAULT_MODEL in names else names[0]


EVERY = -1  # the class dropdown's "every class" entry (ipywidgets treats a None value as "no selection")


def playground(model=None, n: int = 8, steps: int = 25, cfg_scale: float = 4.0, sampler: str | None = None,
               seed: int = 0, fallback_steps: int | None = None, auto: bool = True):
    """Model, class, CFG scale, steps, sampler, seed -> a sample grid, on a click of "Sample" (`auto`: once now).
    `model`: a name from `explore.model_names()` or a DiT. The sampler control offers what fits the model: DDIM and
    DDPM, or for a flow-matching checkpoint the ODE and SDE samplers. Returns a `Panel`."""
    model = _default_model() if model is None else model
    model_w = W.Dropdown(options=_model_options(model), value=model, description="model")
    m = explore.get_model(model, fallback_steps=fallback_steps)
    label_w = W.Dropdown(options=[("every class", EVERY)] + _class_options(m), value=EVERY, description="class")
    cfg_w = W.FloatSlider(value=cfg_scale, min=1.0, max=10.0, step=0.5, description="cfg scale",
                          continuous_update=False)
    steps_w = W.IntSlider(value=steps, min=2, max=250, description="steps", continuous_update=False)
    names = explore.sampler_names(m)
    sampler_w = W.ToggleButtons(options=names, value=sampler or names[0], description="sampler")
    seed_w = W.IntSlider(value=seed, min=0, max=999, description="seed", continuous_update=False)
    n_w = W.IntSlider(value=n, min=1, max=40, description="images", continuous_update=False)
    button, status, progress = W.Button(description="Sample", button_style="primary"), W.HTML(), W.Output()
    image = W.Image(format="png")

    def on_model(_=None):
        try:
            with progress:
                mm = explore.get_model(model_w.value, fallback_steps=fallback_steps)
            label_w.options = [("every class", EVERY)] + _class_options(mm)
            label_w.value = EVERY
            if list(sampler_w.options) != explore.sampler_names(mm):  # DDPM vs flow-matching samplers
                sampler_w.options = explore.sampler_names(mm)
                sampler_w.value = sampler_w.options[0]
        except Exception as e:
            status.value = _error(e)

    def sample() -> str:
        t0 = time.perf_counter()
        with progress:  # the tqdm bar shows here
            label = None if label_w.value == EVERY else label_w.value
            fig = explore.sample_grid(model_w.value, label, n_w.value, cfg_w.value, steps_w.value,
                                      sampler_w.value, seed_w.value, progress=True, fallback_steps=fallback_steps)
        image.value = _png(fig)
        return f"{n_w.value} images, {steps_w.value} {sampler_w.value} steps in {time.perf_counter() - t0:.1f} s"

    def run(_=None):
        _busy(button, status, progress, sample)

    model_w.observe(on_model, names="value")
    button.on_click(run)
    if auto:
        run()
    return Panel([W.HBox([model_w, label_w]), W.HBox([cfg_w, steps_w]), W.HBox([seed_w, n_w]), sampler_w,
                  W.HBox([button, status]), progress, image],
                 dict(model=model_w, label=label_w, cfg_scale=cfg_w, steps=steps_w, sampler=sampler_w, seed=seed_w,
                      n=n_w, button=button, status=status, progress=progress, image=image))


def scrubber(model=None, label=0, steps: int = 25, sampler: str | None = None, cfg_scale: float = 4.0, seed: int = 0,
             fallback_steps: int | None = None, auto: bool = True):
    """A denoising scrubber: "Sample" records one trajectory, the step slider shows x_t and the predicted x̂_0
    at each step (frames are cached, so scrubbing is instant). Returns a `Panel`."""
    model = _default_model() if model is None else model
    m = explore.get_model(model, fallback_steps=fallback_steps)
    label_w = W.Dropdown(options=_class_options(m), value=int(explore._labels(m, label, 1)[0]), description="class")
    seed_w = W.IntSlider(value=seed, min=0, max=999, description="seed", continuous_update=False)
    names = explore.sampler_names(m, trajectory=True)
    sampler_w = W.ToggleButtons(options=names, value=sampler or names[0], description="sampler")
    cfg_w = W.FloatSlider(value=cfg_scale, min=1.0, max=10.0, step=0.5, description="cfg scale",
                          continuous_update=False)
    step_w = W.IntSlider(value=0, min=0, max=max(1, steps - 1), description="step", disabled=True)
    button, status, progress = W.Button(description="Sample", button_style="primary"), W.HTML(), W.Output()
    image = W.Image(format="png")
    state = dict(trajectory=None, frames={})

    def show(_=None):
        traj = state["trajectory"]
        if traj is None:
            return
        try:
            i = min(step_w.value, len(traj) - 1)
            if i not in state["frames"]:
                state["frames"][i] = _png(explore.scrubber_figure(traj, i))
            image.value = state["frames"][i]
        except Exception as e:
            status.value = _error(e)

    def record() -> str:
        with progress:
            traj = explore.denoise_frames(m, label_w.value, steps, sampler_w.value, cfg_w.value, seed_w.value,
                                          progress=True)
        state.update(trajectory=traj, frames={})
        step_w.max = len(traj) - 1
        step_w.disabled = False
        step_w.value = 0
        show()
        return f"{len(traj)} steps recorded: move the step slider"

    def run(_=None):
        _busy(button, status, progress, record)

    step_w.observe(show, names="value")
    button.on_click(run)
    if auto:
        run()
    return Panel([W.HBox([label_w, seed_w]), W.HBox([cfg_w, sampler_w]), W.HBox([button, status]), progress,
                  step_w, image],
                 dict(label=label_w, seed=seed_w, sampler=sampler_w, cfg_scale=cfg_w, step=step_w, button=button,
                      status=status, progress=progress, image=image, state=state))
