"""The ipywidgets of the scaling explorer and the sampling playground: they only wire `ditlab.teach.explore`'s
plain functions to sliders and buttons.

`scaling_explorer`, `playground` and `scrubber` use only controls that exist in ipywidgets 7.7 (Colab) and 8
(JupyterLab 4); figures are rendered to PNG into an `Image` widget shown at the PNG's own size (never stretched,
and at most `MAX_WIDTH` px wide, so a row fits a laptop's notebook with the file browser open), errors show as a
red line in an `HTML` widget instead of a traceback, and slow work runs on a button click with a tqdm progress bar.
Each returns a `Panel` (a VBox) whose `controls` dict holds its widgets, so tests drive them headless; displayed, a
Panel also shows a static PNG of its figures beneath the widget, for readers without a kernel (GitHub, nbviewer).
`demo_app` puts all three in tabs for `ditlab playground`.
"""
import html
import io
import struct
import time

import ipywidgets as W
import torch
from IPython.display import Image, display
from matplotlib.figure import Figure
from PIL import Image as PILImage

from ..model import PAPER_SIZES
from ..eval import gflops_text
from . import explore


DPI = explore.WIDGET_DPI  # of every PNG a widget shows (scrubber_figure is laid out in pixels at it)
MAX_WIDTH = 940  # px: a notebook's output area at a 1400 px window with the file browser open is ~960 px


def _png(fig: Figure, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


def _image() -> W.Image:
    # never stretched by its row or column (align_self), never cut off: a too-narrow window shrinks it evenly
    return W.Image(format="png", layout=W.Layout(align_self="flex-start", flex="0 0 auto", max_width="100%",
                                                 height="auto"))


def _row(*children) -> W.HBox:
    """A row of widgets that wraps onto the next line rather than overflowing a narrow notebook."""
    return W.HBox(list(children), layout=W.Layout(flex_flow="row wrap", align_items="flex-start"))


_TOGGLE = {"button_width": "auto"}  # toggle buttons as wide as their text (the default is 148 px each)


def _toggles(options, value, description: str) -> W.ToggleButtons:
    # flex 0 0 auto: a wrapping row moves the whole control to the next line rather than squeezing it
    return W.ToggleButtons(options=options, value=value, description=description, style=_TOGGLE,
                           layout=W.Layout(flex="0 0 auto"))


def _show(image: W.Image, png: bytes) -> None:
    """Show `png` in `image` at its native size: one PNG pixel per screen pixel."""
    image.value = png
    image.layout.width = f"{png_size(png)[0]}px"


def _error(e: Exception) -> str:
    return f'<span style="color:#c00">⚠ {type(e).__name__}: {html.escape(str(e))}</span>'


def _ok(text: str) -> str:
    return f'<span style="color:#060">{html.escape(text)}</span>'


def _captured(output: W.Output, fn):
    """fn() with its prints and progress bar shown in `output`. Its exception is raised here: an Output used as a
    context manager in a kernel shows the traceback and swallows the exception, which would leave the caller
    without a result (and the status line with a misleading error)."""
    error = None
    with output:
        try:
            return fn()
        except Exception as e:
            error = e
    raise error


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
    image_w = W.Dropdown(options=[128, 256, 512], value=image_size, description="image px")
    patch_w = _toggles([2, 4, 8], patch, "patch p")
    info = W.HTML(layout=W.Layout(width="600px"))
    plot, grid = _image(), _image()
    image = explore.example_image() if image is None else image

    def update(_=None):
        try:
            pt = explore.scaling_point(size_w.value, patch_w.value, image_w.value)
            paper = (f"; the paper: {pt['paper_gflops']:g} Gflops, FID-50K {pt['paper_fid']:.1f}"
                     if pt["paper_fid"] else "; not in the paper's Table 4")
            info.value = (f"<b>{pt['model']}</b> at {pt['image_size']} px → latent {pt['latent_size']}×"
                          f"{pt['latent_size']}×4: <b>{pt['tokens']}</b> tokens, <b>{pt['params'] / 1e6:.1f} M</b> "
                          f"parameters, <b class='gflops'>{gflops_text(pt['gflops'])}</b> Gflops{paper}")
            _show(plot, _png(explore.scaling_figure(size_w.value, patch_w.value, image_w.value, width=MAX_WIDTH / DPI)))
            _show(grid, _png(explore.patch_overlay(image, patch_w.value, pt["latent_size"], size=2.3)))
        except Exception as e:  # shown in the widget, not as a traceback
            info.value = _error(e)

    for w in (size_w, patch_w, image_w):
        w.observe(update, names="value")
    update()
    controls = W.VBox([W.HBox([size_w, image_w]), patch_w, info], layout=W.Layout(width="620px"))
    return Panel([_row(controls, grid), plot],
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
    The grid has `explore.grid_columns` columns, like `explore.sample_grid`'s, and fits `MAX_WIDTH`.
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
    sampler_w = _toggles(names, sampler or names[0], "sampler")
    seed_w = W.IntSlider(value=seed, min=0, max=999, description="seed", continuous_update=False)
    n_w = W.IntSlider(value=n, min=1, max=40, description="images", continuous_update=False)
    button, status, progress = W.Button(description="Sample", button_style="primary"), W.HTML(), W.Output()
    image = _image()

    def on_model(_=None):
        try:
            mm = _captured(progress, lambda: explore.get_model(model_w.value, fallback_steps=fallback_steps))
            label_w.options = [("every class", EVERY)] + _class_options(mm)
            label_w.value = EVERY
            fits = explore.sampler_names(mm)
            if list(sampler_w.options) != fits:  # DDPM vs flow-matching samplers
                sampler_w.options = fits
                sampler_w.value = sampler_w.options[0]
        except Exception as e:
            status.value = _error(e)

    def sample() -> str:
        t0 = time.perf_counter()
        def grid():  # the tqdm bar shows in `progress`
            mm = explore.get_model(model_w.value, fallback_steps=fallback_steps)
            label = None if label_w.value == EVERY else label_w.value
            cols = explore.grid_columns(mm)
            return explore.sample_grid(mm, label, n_w.value, cfg_w.value, steps_w.value, sampler_w.value,
                                       seed_w.value, size=min(1.6, 0.98 * MAX_WIDTH / DPI / cols), progress=True)
        _show(image, _png(_captured(progress, grid)))
        return f"{n_w.value} images, {steps_w.value} {sampler_w.value} steps in {time.perf_counter() - t0:.1f} s"

    def run(_=None):
        _busy(button, status, progress, sample)

    model_w.observe(on_model, names="value")
    button.on_click(run)
    if auto:
        run()
    return Panel([_row(model_w, label_w), _row(cfg_w, steps_w), _row(seed_w, n_w), _row(sampler_w, button, status),
                  progress, image],
                 dict(model=model_w, label=label_w, cfg_scale=cfg_w, steps=steps_w, sampler=sampler_w, seed=seed_w,
                      n=n_w, button=button, status=status, progress=progress, image=image))


def scrubber(model=None, label=0, steps: int = 25, sampler: str | None = None, cfg_scale: float = 4.0, seed: int = 0,
             fallback_steps: int | None = None, auto: bool = True):
    """A denoising scrubber: "Sample" records one trajectory, the step slider (1 to K, the caption beside it says
    the same step) shows x_t and the predicted x̂_0 at each step, at a whole multiple of their pixels (frames are
    cached, so scrubbing is instant). Returns a `Panel`."""
    model = _default_model() if model is None else model
    m = explore.get_model(model, fallback_steps=fallback_steps)
    label_w = W.Dropdown(options=_class_options(m), value=int(explore._labels(m, label, 1)[0]), description="class")
    seed_w = W.IntSlider(value=seed, min=0, max=999, description="seed", continuous_update=False)
    names = explore.sampler_names(m, trajectory=True)
    sampler_w = _toggles(names, sampler or names[0], "sampler")
    cfg_w = W.FloatSlider(value=cfg_scale, min=1.0, max=10.0, step=0.5, description="cfg scale",
                          continuous_update=False)
    step_w = W.IntSlider(value=1, min=1, max=max(2, steps), description="step", disabled=True)
    caption = W.HTML()
    button, status, progress = W.Button(description="Sample", button_style="primary"), W.HTML(), W.Output()
    image = _image()
    state = dict(trajectory=None, frames={})

    def show(_=None):
        traj = state["trajectory"]
        if traj is None:
            return
        try:
            i = min(step_w.value, len(traj)) - 1  # the slider counts steps from 1, the trajectory from 0
            if i not in state["frames"]:
                state["frames"][i] = _png(explore.scrubber_figure(traj, i, title=False))
            _show(image, state["frames"][i])
            caption.value = (f"step <b class='step'>{i + 1}</b> of {len(traj)}: t = {traj[i]['t']:.3g}, "
                             "the noisy input x<sub>t</sub> and the model's guess x̂<sub>0</sub>")
        except Exception as e:
            status.value = _error(e)

    def record() -> str:
        traj = _captured(progress, lambda: explore.denoise_frames(m, label_w.value, steps, sampler_w.value,
                                                                  cfg_w.value, seed_w.value, progress=True))
        state.update(trajectory=traj, frames={})
        step_w.max = len(traj)
        step_w.disabled = False
        step_w.value = 1
        show()
        return f"{len(traj)} steps recorded: move the step slider"

    def run(_=None):
        _busy(button, status, progress, record)

    step_w.observe(show, names="value")
    button.on_click(run)
    if auto:
        run()
    return Panel([_row(label_w, seed_w), _row(cfg_w, sampler_w), _row(button, status), progress, _row(step_w, caption),
                  image],
                 dict(label=label_w, seed=seed_w, sampler=sampler_w, cfg_scale=cfg_w, step=step_w, caption=caption,
                      button=button, status=status, progress=progress, image=image, state=state))


def demo_app(model=None, n: int = 20, steps: int = 25, fallback_steps: int | None = None):
    """The instructor's app (`ditlab playground`): the playground, the denoising scrubber and the scaling explorer
    in three tabs. Returns a Tab; `app.controls` holds the three panels."""
    boxes = dict(playground=playground(model, n=n, steps=steps, fallback_steps=fallback_steps),
                 scrubber=scrubber(model, steps=steps, fallback_steps=fallback_steps),
                 explorer=scaling_explorer())
    app = W.Tab(children=list(boxes.values()))
    for i, title in enumerate(("Sampling playground", "Watch a sample form", "Scaling explorer")):
        app.set_title(i, title)  # ipywidgets 7 and 8
    app.controls = boxes
    return app
