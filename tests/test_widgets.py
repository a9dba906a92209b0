"""ditlab.teach.explore: the logic functions against the paper's numbers and the sampler; ditlab.teach.widgets: the
ipywidgets builders driven headless (value changes, button clicks), errors shown in the widget instead of raised."""
import matplotlib

matplotlib.use("Agg")

import io  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ditlab.checkpoint import save_model  # noqa: E402
from ditlab.eval import estimate_flops, gflops_text, paper_table  # noqa: E402
from ditlab.model import DiT, DiTConfig, get_config  # noqa: E402
from ditlab.teach import explore, widgets  # noqa: E402
from ditlab.checkpoint import CHECKPOINT_DIR  # noqa: E402

PNG = b"\x89PNG"
CLASSES = [f"c{i}" for i in range(10)]


def tiny(patch=2, null_class=True, seed=0):
    """A random 8×8×1 DiT with 10 named classes (outputs are noise, the plumbing is real)."""
    torch.manual_seed(seed)
    cfg = DiTConfig(input_size=8, patch_size=patch, in_channels=1, hidden_size=32, depth=1, num_heads=2,
                    num_classes=10, class_dropout_prob=0.1 if null_class else 0.0)
    model = DiT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    model.classes = list(CLASSES)
    return model


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No shipped checkpoints unless a test puts some in; an empty model memory cache."""
    monkeypatch.setenv("DITLAB_CHECKPOINTS", str(tmp_path / "no-checkpoints"))
    monkeypatch.setattr(explore, "_MODELS", {})


@pytest.fixture
def shipped(monkeypatch, tmp_path):
    """Three tiny 'shipped' checkpoints digits-p1/p2/p4 in a checkpoint folder."""
    d = tmp_path / "checkpoints"
    for p in (1, 2, 4):
        save_model(tiny(p, seed=p), d / f"digits-p{p}.safetensors", classes=CLASSES)
        (d / f"digits-p{p}.json").write_text('{"steps": 1}')
    monkeypatch.setenv("DITLAB_CHECKPOINTS", str(d))
    return ["digits-p1", "digits-p2", "digits-p4"]


def _imgs(ax):
    return [im.get_array() for im in ax.get_images()]


# ---------------------------------------------------------------- compute

def test_scaling_point_reproduces_table4():
    rows = paper_table("adaLN-Zero")
    assert len(rows) == 13
    for r in rows:
        size, p = r["model"][4:].split("/")
        pt = explore.scaling_point(size, int(p), int(r["image_size"]))
        assert abs(pt["gflops"] / r["gflops"] - 1) < 0.005, r["model"]
        assert abs(pt["params"] / 1e6 / r["params_m"] - 1) < 0.015, r["model"]
        assert pt["tokens"] == (int(r["image_size"]) // 8 // int(p)) ** 2
        assert pt["paper_gflops"] == r["gflops"]
    xl = explore.scaling_point("XL", 2, 256)
    assert xl["paper_fid"] == 19.47 and xl["tokens"] == 256 and xl["latent_size"] == 32
    assert explore.scaling_point("S", 8, 128)["paper_fid"] is None


@pytest.mark.parametrize("args, match", [(("M", 2, 256), "size"), (("S", 0, 256), "patch"),
                                         (("S", 2, 100), "image_size"), (("S", 8, 32), "image_size")])
def test_scaling_point_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        explore.scaling_point(*args)


def test_scaling_figure_marks_the_chosen_config():
    fig = explore.scaling_figure("B", 4, 256)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    left, right = fig.axes
    points = np.concatenate([c.get_offsets() for c in left.collections if len(c.get_offsets())])
    table = {(r["gflops"], r["fid50k_400k"]) for r in paper_table("adaLN-Zero", 256)}
    assert {tuple(map(float, p)) for p in points} == table  # the paper's 12 points (one ringed), nothing else
    assert [tuple(c.get_offsets()[0]) for c in left.collections if c.get_sizes()[0] > 100] == [(5.56, 68.38)]
    g = estimate_flops(get_config("DiT-B/4")) / 1e9
    assert any(list(line.get_xdata()) == [g, g] for line in left.get_lines())  # the vertical marker
    assert "corr = -0.9" in " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "DiT-B/4" in " ".join(t.get_text() for t in right.texts)
    assert isinstance(explore.fid_vs_gflops("DiT-XL/2"), Figure)


def test_patch_overlay_counts_tokens_at_the_latent_size():
    img = torch.rand(3, 32, 32) * 2 - 1
    fig = explore.patch_overlay(img, 4, latent_size=64)
    (ax,) = fig.axes
    assert ax.get_title() == "p = 4: 16×16 = 256 tokens"
    assert _imgs(ax)[0].shape == (64, 64, 3)
    with pytest.raises(ValueError, match="image"):
        explore.patch_overlay(torch.zeros(32, 32), 4)


# ---------------------------------------------------------------- sampling

def test_sample_grid_titles_and_generate():
    model = tiny()
    fig = explore.sample_grid(model, None, n=12, steps=3, seed=1, nrow=6)
    assert len(fig.axes) == 12 and [ax.get_title() for ax in fig.axes] == (CLASSES * 2)[:12]
    out = explore.generate(model, [3, 3], cfg_scale=2.0, steps=3, seed=1)
    assert out.images.shape == (2, 1, 8, 8) and out.labels.tolist() == [3, 3]
    one = explore.sample_grid(model, "c7", n=2, steps=3)
    assert [ax.get_title() for ax in one.axes] == ["c7", "c7"]
    with pytest.raises(ValueError, match="class"):
        explore.sample_grid(model, "c11", n=2, steps=3)


def test_denoise_frames_end_in_the_sample_and_scrubber_shows_them():
    model = tiny()
    traj = explore.denoise_frames(model, 5, steps=4, sampler="ddim", cfg_scale=3.0, seed=2)
    assert len(traj) == 4 and traj[0]["t"] == 999 and [s["t"] for s in traj] == sorted((s["t"] for s in traj), reverse=True)
    final = explore.generate(model, [5], cfg_scale=3.0, steps=4, sampler="ddim", seed=2).images
    assert torch.allclose(traj[-1]["pred_x0"].clamp(-1, 1), final, atol=1e-5)  # DDIM's last step returns x̂_0
    fig = explore.scrubber_figure(traj, 2)
    a, b = (_imgs(ax)[0] for ax in fig.axes)
    np.testing.assert_allclose(a, ((traj[2]["x_t"][0, 0] + 1) / 2).clamp(0, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(b, ((traj[2]["pred_x0"][0, 0] + 1) / 2).clamp(0, 1).numpy(), atol=1e-6)
    assert fig.axes[0].get_title() == f"x_t, t = {traj[2]['t']}"
    with pytest.raises(ValueError, match="index"):
        explore.scrubber_figure(traj, 4)
    with pytest.raises(ValueError, match="trajectory"):
        explore.scrubber_figure([], 0)


def test_cfg_sweep_rows_share_the_noise():
    model = tiny()
    fig = explore.cfg_sweep(model, 2, scales=(1.0, 5.0), n=3, steps=3, seed=4)
    assert len(fig.axes) == 6 and [fig.axes[i].get_ylabel() for i in (0, 3)] == ["cfg 1", "cfg 5"]
    plain = explore.generate(model, [2] * 3, cfg_scale=1.0, steps=3, seed=4).images
    np.testing.assert_allclose(_imgs(fig.axes[1])[0], ((plain[1, 0] + 1) / 2).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="null class"):
        explore.cfg_sweep(tiny(null_class=False), 2, scales=(4.0,), n=1, steps=2)


def test_compare_patch_sizes_labels_gflops(shipped):
    fig = explore.compare_patch_sizes(shipped, label="c3", n=2, steps=2)
    labels = [fig.axes[2 * i].get_ylabel() for i in range(3)]
    for name, p, text in zip(shipped, (1, 2, 4), labels):
        g = estimate_flops(tiny(p).config) / 1e9
        assert text.startswith(name) and f"p={p}, T={(8 // p) ** 2}" in text and f"{g:.3f} Gflops" in text


# ---------------------------------------------------------------- models

def test_get_model_prefers_shipped_checkpoints(shipped):
    assert explore.model_names() == shipped
    m = explore.get_model("digits-p2")
    assert m.config.patch_size == 2 and m.name == "digits-p2" and m.card == {"steps": 1}
    assert explore.get_model("digits-p2") is m  # kept in memory
    ref = tiny(2, seed=2)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.allclose(m(x, t, y), ref(x, t, y), atol=1e-5)
    assert explore.get_model(ref) is ref


def test_get_model_trains_and_caches_a_stand_in(monkeypatch, tmp_path, capsys):
    data = tmp_path / "tiny.npz"  # 32 random 16×16 gray images, 10 classes: no dataset generation in this test
    rng = np.random.default_rng(0)
    np.savez(data, x_train=rng.integers(0, 256, (32, 16, 16), dtype=np.uint8), y_train=np.arange(32) % 10)
    monkeypatch.setitem(explore.FALLBACK, "model_args", dict(depth=1, hidden_size=16, num_heads=2))
    monkeypatch.setitem(explore.FALLBACK, "batch_size", 8)
    monkeypatch.setitem(explore.FALLBACK, "data", str(data))
    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "data-cache"))  # the .npz's cached copy goes there
    assert explore.model_names() == list(explore.PATCH_NAMES)
    m = explore.get_model("digits-p8", fallback_steps=2, cache_dir=tmp_path, verbose=True)
    assert "no shipped checkpoint 'digits-p8'" in capsys.readouterr().out
    assert m.config.patch_size == 8 and m.config.hw == (16, 16) and m.card["stand_in"] and len(m.classes) == 10
    assert len(list((tmp_path / "widgets").glob("digits-p8-*/ema.safetensors"))) == 1
    assert not list((tmp_path / "widgets").glob(".*"))  # no temporary run folder left
    monkeypatch.setattr(explore, "_MODELS", {})
    monkeypatch.setattr(explore, "train", lambda *a, **k: pytest.fail("trained again instead of using the cache"))
    again = explore.get_model("digits-p8", fallback_steps=2, cache_dir=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), again.state_dict().values()))
    for bad, err in (("digits-p3", ValueError), ("imagenet", ValueError), (3, TypeError)):
        with pytest.raises(err):
            explore.get_model(bad, fallback_steps=2, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fallback_steps"):
        explore.get_model("digits-p4", fallback_steps=0)


# ---------------------------------------------------------------- widgets, driven headless

def test_scaling_explorer_updates_and_shows_errors(monkeypatch):
    box = widgets.scaling_explorer("XL", 2, 256, image=torch.zeros(1, 32, 32))
    c = box.controls
    assert "DiT-XL/2" in c["info"].value and "<b>256</b> tokens" in c["info"].value and "19.5" in c["info"].value
    assert c["plot"].value[:4] == PNG and c["grid"].value[:4] == PNG
    before = c["plot"].value
    c["patch"].value = 4
    assert "<b>64</b> tokens" in c["info"].value and c["plot"].value != before
    c["image_size"].value = 512
    assert "DiT-XL/4" in c["info"].value and "<b>256</b> tokens" in c["info"].value and "not in the paper" in c["info"].value

    def boom(*a, **k):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(explore, "scaling_figure", boom)
    c["size"].value = "S"  # no exception escapes
    assert "RuntimeError" in c["info"].value and "plot failed" in c["info"].value


def test_playground_samples_on_click_and_reports_errors():
    model = tiny()
    box = widgets.playground(model, n=4, steps=2, auto=False)
    c = box.controls
    assert c["image"].value in (b"", None) or len(c["image"].value) == 0
    assert c["cfg_scale"].continuous_update is False and c["steps"].continuous_update is False
    assert c["label"].label == "every class" and c["label"].value == widgets.EVERY
    c["label"].value = 7
    c["button"].click()
    assert c["image"].value[:4] == PNG and "4 images" in c["status"].value and not c["button"].disabled
    bad = widgets.playground(tiny(null_class=False), n=2, steps=2, auto=True)  # cfg 4 needs a null class
    assert "ValueError" in bad.controls["status"].value and "null class" in bad.controls["status"].value
    bad.controls["cfg_scale"].value = 1.0
    bad.controls["button"].click()
    assert "2 images" in bad.controls["status"].value


def test_playground_switches_between_named_models(shipped):
    box = widgets.playground("digits-p1", n=3, steps=2, auto=False)
    c = box.controls
    assert [v for _, v in c["model"].options] == shipped
    c["label"].value = 4
    c["model"].value = "digits-p4"  # loads it, resets the class list
    assert c["label"].value == widgets.EVERY and len(c["label"].options) == 11 and c["label"].options[5][0] == "4: c4"
    c["button"].click()
    assert "3 images" in c["status"].value and c["image"].value[:4] == PNG


def test_playground_offers_the_flow_samplers_for_the_shipped_flow_checkpoint(monkeypatch):
    """The shipped DDPM and flow-matching checkpoints side by side: choosing the flow one swaps the sampler
    control to the ODE/SDE samplers (Euler first) and samples with them; back to DDPM gives DDIM/DDPM again."""
    monkeypatch.setenv("DITLAB_CHECKPOINTS", str(CHECKPOINT_DIR))  # the real shipped ones
    box = widgets.playground("digits-p8", n=2, steps=2, auto=False)
    c = box.controls
    assert list(c["sampler"].options) == ["ddim", "ddpm"]
    c["model"].value = "digits-flow-p2"
    assert list(c["sampler"].options) == ["euler", "heun", "dopri5", "sde-euler", "sde-heun"]
    assert c["sampler"].value == "euler"
    c["button"].click()
    assert "2 images, 2 euler steps" in c["status"].value and c["image"].value[:4] == PNG
    c["sampler"].value = "sde-euler"
    c["button"].click()
    assert "sde-euler" in c["status"].value
    c["model"].value = "digits-p8"
    assert list(c["sampler"].options) == ["ddim", "ddpm"] and c["sampler"].value == "ddim"
    scrub = widgets.scrubber("digits-flow-p2", steps=3)
    assert list(scrub.controls["sampler"].options) == ["euler", "heun"]


def test_scrubber_moves_through_the_trajectory():
    box = widgets.scrubber(tiny(), label=3, steps=3, auto=True)
    c = box.controls
    assert (c["step"].min, c["step"].max, c["step"].value) == (1, 3, 1) and not c["step"].disabled
    assert c["image"].value[:4] == PNG
    first = c["image"].value
    c["step"].value = 3
    assert c["image"].value != first and set(c["state"]["frames"]) == {0, 2}
    c["step"].value = 1
    assert c["image"].value == first  # from the frame cache
    bad = widgets.scrubber(tiny(null_class=False), steps=2)
    assert "null class" in bad.controls["status"].value and bad.controls["step"].disabled


def test_scrubber_caption_says_the_step_the_slider_shows():
    box = widgets.scrubber(tiny(), label=3, steps=4, auto=True)
    c = box.controls
    traj = c["state"]["trajectory"]
    for value in (1, 2, 4):
        c["step"].value = value
        assert f"step <b class='step'>{value}</b> of 4: t = {traj[value - 1]['t']:.3g}" in c["caption"].value
    fig = explore.scrubber_figure(traj, 1)  # index 1 is the slider's step 2
    assert fig._suptitle.get_text() == "step 2 of 4"


def test_widget_images_are_shown_at_their_native_size_and_fit_the_notebook():
    """Every PNG is displayed at its own pixel size (no stretching, no blur) and is at most MAX_WIDTH px wide, so a
    row of controls and images fits a 1280 px notebook (the browser test measures the real page)."""
    boxes = [widgets.scaling_explorer(s, p, px, image=torch.zeros(1, 32, 32)) for s, p, px in
             (("XL", 2, 256), ("S", 8, 512))]
    boxes += [widgets.playground(tiny(), n=40, steps=2), widgets.scrubber(tiny(), steps=2)]
    shown = 0
    for box in boxes:
        for name, w in box.controls.items():
            if name in ("plot", "grid", "image"):
                width, height = widgets.png_size(w.value)
                assert w.layout.width == f"{width}px" and w.layout.height == "auto", name  # native, never stretched
                assert w.layout.align_self == "flex-start" and w.layout.max_width == "100%"
                assert width <= widgets.MAX_WIDTH, (name, width)
                shown += 1
    assert shown == 6
    explorer = boxes[0]
    row = explorer.children[0]  # the controls beside the patch grid
    assert int(row.children[0].layout.width[:-2]) + widgets.png_size(explorer.controls["grid"].value)[0] <= 1280


def test_scrubber_figure_draws_each_image_pixel_as_a_whole_block():
    import matplotlib.image

    traj = explore.denoise_frames(tiny(), 3, steps=2, cfg_scale=1.0)
    fig = explore.scrubber_figure(traj, 1, scale=5, title=False)
    png = widgets._png(fig)
    width, height = widgets.png_size(png)
    assert (width, height) == (2 * 5 * 8 + 24 + 2 * 8, 5 * 8 + 28 + 8)
    rgb = matplotlib.image.imread(io.BytesIO(png))[..., 0]  # gray: one channel says all
    left = rgb[height - 8 - 40:height - 8, 8:8 + 40]  # x_t: 8×8 pixels drawn 5×5 each
    blocks = left.reshape(8, 5, 8, 5)
    assert np.allclose(blocks, blocks[:, :1, :, :1], atol=1 / 255)
    want = ((traj[1]["x_t"][0, 0] + 1) / 2).clamp(0, 1).numpy()
    np.testing.assert_allclose(blocks[:, 0, :, 0], want, atol=1.5 / 255)


def test_playground_grid_has_the_columns_of_the_plain_call(monkeypatch):
    model = tiny()
    figs = []
    real = explore.sample_grid
    monkeypatch.setattr(explore, "sample_grid", lambda *a, **k: figs.append(real(*a, **k)) or figs[-1])
    widgets.playground(model, n=20, steps=2)
    plain = explore.sample_grid(model, None, n=20, steps=2)

    def columns(fig):
        return len({round(ax.get_position().x0, 3) for ax in fig.axes})

    assert columns(figs[0]) == columns(plain) == explore.grid_columns(model) == 10


@pytest.mark.parametrize("size, patch, px", [("S", 8, 256), ("S", 4, 128), ("XL", 2, 256), ("B", 8, 512)])
def test_explorer_gflops_labels_are_the_number_in_its_text(size, patch, px):
    """The info line, the Fig. 8 legend and the annotation write the same Gflops (0.36, not 0.4 beside 0.36)."""
    box = widgets.scaling_explorer(size, patch, px, image=torch.zeros(1, 32, 32))
    g = estimate_flops(get_config(f"DiT-{size}/{patch}", input_size=px // 8)) / 1e9
    text = gflops_text(g)
    assert f"<b class='gflops'>{text}</b> Gflops" in box.controls["info"].value
    fig = explore.scaling_figure(size, patch, px)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert f"DiT-{size}/{patch} at {px} px: {text} Gflops" in legend
    assert f"{text} Gflops" in " ".join(t.get_text() for t in fig.axes[1].texts)
    assert abs(float(text) / g - 1) < 0.02


def test_gflops_text():
    assert [gflops_text(g) for g in (0.3605, 0.0976, 1.4149, 118.686, 524.81)] == \
        ["0.36", "0.098", "1.41", "118.69", "524.81"]


def test_demo_app_has_the_three_widgets_in_tabs():
    app = widgets.demo_app(tiny(), n=4, steps=2)
    assert [app.get_title(i) for i in range(3)] == ["Sampling playground", "Watch a sample form", "Scaling explorer"]
    assert list(app.controls) == ["playground", "scrubber", "explorer"]
    assert app.controls["playground"].controls["image"].value[:4] == PNG


def test_a_failing_sample_shows_its_own_error_even_where_output_swallows_it(monkeypatch):
    """In a kernel, `with Output():` prints a traceback and swallows the exception (found by the browser test:
    the status said UnboundLocalError); the widgets re-raise it so that the status line names the real error."""
    import ipywidgets

    monkeypatch.setattr(ipywidgets.Output, "__exit__", lambda self, *exc: True)  # what it does in a kernel
    box = widgets.playground(tiny(), n=2, steps=2, auto=False)

    def broken(*a, **k):
        raise RuntimeError("deliberately broken")

    monkeypatch.setattr(explore, "sample_grid", broken)
    box.controls["button"].click()
    assert "RuntimeError: deliberately broken" in box.controls["status"].value
    assert not box.controls["button"].disabled


def test_displayed_panels_show_a_static_preview_beneath_that_the_first_interaction_clears(monkeypatch):
    from PIL import Image

    shown, updates = [], []

    class Handle:
        def update(self, obj, **kwargs):
            updates.append(obj)

    def fake_display(obj, raw=False, display_id=None):
        shown.append(obj)
        return Handle() if display_id else None

    monkeypatch.setattr(widgets, "display", fake_display)
    explorer = widgets.scaling_explorer("XL", 2, 256, image=torch.zeros(1, 32, 32))
    plot, grid = (Image.open(io.BytesIO(explorer.controls[k].value)) for k in ("plot", "grid"))
    png = explorer.preview()
    assert png[:4] == PNG
    assert Image.open(io.BytesIO(png)).size == (plot.width + grid.width, max(plot.height, grid.height))
    explorer._ipython_display_()
    widget, preview = shown
    assert widget["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.model_id
    assert "static preview" in widget["text/plain"] and preview.data == png and preview.format == "png"
    explorer.controls["patch"].value = 4  # the first interaction: the preview of the default state goes away
    assert updates and updates[0] == {"text/plain": ""}
    for box in (widgets.playground(tiny(), n=2, steps=2), widgets.scrubber(tiny(), steps=2)):
        assert box.preview()[:4] == PNG  # every builder's default state has a figure
    assert widgets.playground(tiny(), n=2, steps=2, auto=False).preview() is None  # nothing drawn yet
