"""ditlab.teach.viz and its topic modules (viz_embeddings, viz_diagrams, viz_compute, viz_training): every plot
returns a Figure (no pyplot state) whose axes hold the data asked for."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ditlab.diffusion import create_diffusion  # noqa: E402
from ditlab.eval import FLOPS_PARTS, estimate_flops, flops_breakdown, paper_table  # noqa: E402
from ditlab.model import get_config, patchify, sincos_2d  # noqa: E402
from ditlab.teach import viz, viz_compute, viz_diagrams, viz_embeddings, viz_training  # noqa: E402


def _images(ax):
    return [im.get_array() for im in ax.get_images()]


def test_no_pyplot_state():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = viz.show_images(torch.zeros(2, 1, 4, 4))
    assert isinstance(fig, Figure) and plt.get_fignums() == before


def test_show_images_grid_and_scaling():
    x = torch.linspace(-1, 1, 5 * 3 * 4 * 4).reshape(5, 3, 4, 4)
    fig = viz.show_images(x, nrow=3, titles=list("abcde"))
    assert len(fig.axes) == 5  # the 6th slot of the 2×3 grid is removed
    assert [ax.get_title() for ax in fig.axes] == list("abcde")
    (img,) = _images(fig.axes[4])
    assert img.shape == (4, 4, 3)
    np.testing.assert_allclose(img, ((x[4] + 1) / 2).permute(1, 2, 0).numpy(), atol=1e-6)
    gray = viz.show_images(np.zeros((2, 1, 6, 6)), nrow=8)
    assert len(gray.axes) == 2 and _images(gray.axes[0])[0].shape == (6, 6)


@pytest.mark.parametrize("bad, match", [(dict(images=torch.zeros(1, 4, 4)), "N, C, H, W"),
                                        (dict(images=torch.zeros(1, 2, 4, 4)), "C = 1 or 3"),
                                        (dict(images=torch.zeros(2, 1, 4, 4), nrow=0), "nrow"),
                                        (dict(images=torch.zeros(2, 1, 4, 4), titles=["a"]), "titles")])
def test_show_images_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        viz.show_images(**bad)


def test_patch_grid_lines_and_titles():
    img = torch.rand(1, 16, 16) * 2 - 1
    fig = viz.patch_grid(img, (2, 4, 8))
    assert len(fig.axes) == 3
    for ax, p in zip(fig.axes, (2, 4, 8)):
        assert _images(ax)[0].shape == (16, 16)
        assert len(ax.get_lines()) == 2 * (16 // p + 1)  # vertical + horizontal grid lines
        assert f"{(16 // p) ** 2} tokens" in ax.get_title()
    numbered = viz.patch_grid(img, 8, numbers=True)
    assert [t.get_text() for t in numbered.axes[0].texts] == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="patch_sizes"):
        viz.patch_grid(img, 3)


def test_patch_tokens_shows_patchify_matrix():
    img = torch.rand(3, 8, 8) * 2 - 1
    fig = viz.patch_tokens(img, 4)
    ax_img, ax_tok = fig.axes
    assert len(ax_img.texts) == 4
    (tok,) = _images(ax_tok)
    np.testing.assert_allclose(tok, (patchify(img[None], 4)[0].numpy() + 1) / 2, atol=1e-6)


def test_embedding_heatmap():
    table = torch.randn(11, 8)
    fig = viz_embeddings.embedding_heatmap(table, row_labels=[*range(10), "∅"], title="labels")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap + colorbar
    np.testing.assert_allclose(_images(ax)[0], table.numpy(), atol=1e-6)
    assert ax.get_yticklabels()[-1].get_text() == "∅" and ax.get_title() == "labels"
    with pytest.raises(ValueError, match="table"):
        viz_embeddings.embedding_heatmap(torch.zeros(2, 3, 4))


def test_similarity_heatmaps_values():
    grid = (4, 6)
    pos = sincos_2d(32, grid)
    fig = viz_embeddings.similarity_heatmaps(pos[None], grid, [0, (2, 3)])
    assert len(fig.axes) == 3  # two maps + colorbar
    sim = viz_embeddings.cosine_similarity_matrix(pos)
    np.testing.assert_allclose(np.diag(sim), 1, atol=1e-6)
    for ax, i in zip(fig.axes[:2], (0, 2 * 6 + 3)):
        (img,) = _images(ax)
        assert img.shape == grid
        np.testing.assert_allclose(img, sim[i].reshape(grid), atol=1e-6)
        assert np.unravel_index(np.argmax(img), grid) == divmod(i, 6)  # most similar to itself
    with pytest.raises(ValueError, match="tokens"):
        viz_embeddings.similarity_heatmaps(pos, grid, [24])
    with pytest.raises(ValueError, match="pos_embed"):
        viz_embeddings.similarity_heatmaps(pos, 4, [0])


def test_gflops_vs_patch_lines_match_estimate_and_paper():
    fig = viz_compute.gflops_vs_patch(sizes=("S", "XL"), patch_sizes=(8, 2, 4))
    lines = fig.axes[0].get_lines()
    model_lines = [ln for ln in lines if ln.get_label().startswith("DiT-")]
    assert [ln.get_label() for ln in model_lines] == ["DiT-S", "DiT-XL"]
    for ln, s in zip(model_lines, ("S", "XL")):
        assert list(ln.get_xdata()) == [2, 4, 8]
        want = [estimate_flops(get_config(f"DiT-{s}/{p}")) / 1e9 for p in (2, 4, 8)]
        np.testing.assert_allclose(ln.get_ydata(), want)
    paper = [ln for ln in lines if not ln.get_label().startswith("DiT-")]
    reported = {r["model"]: r["gflops"] for r in paper_table("adaLN-Zero", 256)}
    assert len(paper) == 2
    np.testing.assert_allclose(paper[1].get_ydata(), [reported[f"DiT-XL/{p}"] for p in (2, 4, 8)])
    assert len(viz_compute.gflops_vs_patch(paper=False, input_size=16).axes[0].get_lines()) == 4


def test_block_comparison_reproduces_table4():
    rows = viz_compute.block_rows()
    assert sorted(r["block"] for r in rows) == sorted(["adaLN-Zero", "adaLN", "cross-attention", "in-context"])
    for r in rows:
        assert r["gflops"] == pytest.approx(r["paper_gflops"], rel=5e-3)
        assert r["params_m"] == pytest.approx(r["paper_params_m"], rel=1e-2)
    fig = viz_compute.block_comparison_plot(rows)
    assert len(fig.axes) == 3
    gflops_bars = fig.axes[0].patches
    assert len(gflops_bars) == 2 * len(rows)
    np.testing.assert_allclose([b.get_height() for b in gflops_bars[:len(rows)]], [r["gflops"] for r in rows])
    fid = {r["block"]: r["fid"] for r in rows}
    assert min(fid, key=fid.get) == "adaLN-Zero"  # paper Fig. 5 / Table 4: best FID
    assert [b.get_height() for b in fig.axes[2].patches] == [r["fid"] for r in rows]
    with pytest.raises(ValueError, match="rows"):
        viz_compute.block_comparison_plot([])


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_dit_overview_is_drawn_to_fit_a_notebook():
    """Notebook 00's diagram of the whole network: a figure (an ASCII drawing wrapped in a normal window) at most
    940 px wide at 100 dpi, with the token count computed from the patch size."""
    fig = viz_diagrams.dit_overview(patch=4)
    assert fig.get_size_inches()[0] * 100 <= 940
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "T = 64 tokens" in texts and "4×4 patches" in texts and "scale, shift, gate" in texts
    with pytest.raises(ValueError, match="patch"):
        viz_diagrams.dit_overview(patch=5)


def test_block_diagrams_draw_fig3():
    fig = viz_diagrams.block_diagrams()
    assert len(fig.axes) == 4
    by_block = {ax.get_title().split("\n")[0].removeprefix("DiT block with "): ax for ax in fig.axes}
    assert list(by_block) == ["adaLN-Zero", "adaLN", "cross-attention", "in-context"]
    for name, ax in by_block.items():
        t = _texts(ax)
        assert t.count("+") == (3 if name == "cross-attention" else 2)  # one residual sum per sub-layer
        assert t.count("Layer Norm") == t.count("+")
        assert ("Scale, Shift" in t) == name.startswith("adaLN")
        assert t.count("Scale") == (2 if name == "adaLN-Zero" else 0)  # the gates α
        assert ("α1" in t and "α2" in t) == (name == "adaLN-Zero")
        assert any("Cross-Attention" in x for x in t) == (name == "cross-attention")
        assert any("[t; y]" in x for x in t) == (name in ("cross-attention", "in-context"))
        assert ("c = t + y" in t) == name.startswith("adaLN")
    paper = {r["block"]: r for r in paper_table(image_size=256) if r["model"] == "DiT-XL/2"}
    assert f"FID {paper['in-context']['fid50k_400k']:.1f}" in by_block["in-context"].get_title()
    assert by_block["adaLN-Zero"].title.get_fontweight() == "bold"
    assert len(viz_diagrams.block_diagrams("adaLN", highlight=None).axes) == 1
    with pytest.raises(ValueError, match="blocks"):
        viz_diagrams.block_diagrams(["adaLN-One"])


def test_flops_breakdown_plot_stacks_the_parts():
    fig = viz_compute.flops_breakdown_plot(("S", "XL"), (8, 4, 2))
    assert len(fig.axes) == 2
    for ax, size in zip(fig.axes, ("S", "XL")):
        bars = ax.patches
        assert len(bars) == len(FLOPS_PARTS) * 3
        for i, p in enumerate((8, 4, 2)):
            parts = flops_breakdown(get_config(f"DiT-{size}/{p}"))
            heights = [b.get_height() for b in bars[i::3]]  # one bar per patch size, one call per part
            np.testing.assert_allclose(heights, [parts[k] / 1e9 for k in FLOPS_PARTS])
            np.testing.assert_allclose(sum(heights), estimate_flops(f"DiT-{size}/{p}") / 1e9)
        assert any("×4" in t for t in _texts(ax))  # halving p: about ×4
    labels = fig.axes[0].get_legend().get_texts()
    assert [t.get_text() for t in labels] == list(FLOPS_PARTS)[::-1]
    with pytest.raises(ValueError, match="patch_sizes"):
        viz_compute.flops_breakdown_plot(patch_sizes=(3,))


# ---------------------------------------------------------------- diffusion and training plots

def _rows(n=5, vb=True):
    return [dict(step=10 * (i + 1), loss=1.0 / (i + 1) + (0.01 if vb else 0.0), mse=1.0 / (i + 1),
                 vb=0.01 if vb else 0.0, img_per_s=100.0) for i in range(n)]


def test_loss_curve_lines_and_log_scale():
    rows = _rows()
    ax = viz_training.loss_curve(rows).axes[0]
    assert ax.get_yscale() == "log"
    lines = {ln.get_label().split()[0]: ln for ln in ax.get_lines()}
    assert set(lines) == {"loss", "mse", "vb"}
    for k, ln in lines.items():
        np.testing.assert_allclose(ln.get_xdata(), [r["step"] for r in rows])
        np.testing.assert_allclose(ln.get_ydata(), [r[k] for r in rows])
    # rows read back from log.csv are strings; vb = 0 (fixed Σ) cannot be drawn on a log axis and is left out
    csv_rows = [{k: str(v) for k, v in r.items()} for r in _rows(vb=False)]
    labels = [ln.get_label().split()[0] for ln in viz_training.loss_curve(csv_rows).axes[0].get_lines()]
    assert labels == ["loss", "mse"]
    mse_only = viz_training.loss_curve(rows, keys=("mse",)).axes[0].get_lines()
    assert [ln.get_label().split()[0] for ln in mse_only] == ["mse"]
    with pytest.raises(ValueError, match="log_rows"):
        viz_training.loss_curve([])
    with pytest.raises(ValueError, match="step and loss"):
        viz_training.loss_curve([dict(step=1, mse=0.5)])
    with pytest.raises(TypeError, match="log_rows"):
        viz_training.loss_curve(iter(rows))


def test_schedule_plot_linear_vs_cosine():
    lin, cos = create_diffusion(), create_diffusion(noise_schedule="cosine")
    fig = viz_training.schedule_plot({"linear": lin, "cosine": cos})
    ab_ax, snr_ax, beta_ax = fig.axes
    assert snr_ax.get_yscale() == "log" and beta_ax.get_yscale() == "log"
    assert [ln.get_label() for ln in ab_ax.get_lines()] == ["linear", "cosine"]
    ac = lin.alphas_cumprod.numpy()
    np.testing.assert_allclose(ab_ax.get_lines()[0].get_ydata(), ac)
    np.testing.assert_allclose(snr_ax.get_lines()[0].get_ydata(), ac / (1 - ac))
    beta = beta_ax.get_lines()[0].get_ydata()
    assert beta[0] == pytest.approx(1e-4) and beta[-1] == pytest.approx(0.02)  # paper §3.1: linear 1e-4 -> 0.02
    # a respaced diffusion is drawn at its original timesteps, with the same ᾱ there
    spaced = viz_training.schedule_plot(create_diffusion("10")).axes[0].get_lines()[0]
    keep = create_diffusion("10").timestep_map.numpy()
    np.testing.assert_allclose(spaced.get_xdata(), keep)
    np.testing.assert_allclose(spaced.get_ydata(), ac[keep])
    with pytest.raises(TypeError, match="GaussianDiffusion"):
        viz_training.schedule_plot([1, 2])
    with pytest.raises(ValueError, match="labels"):
        viz_training.schedule_plot([lin, cos], labels=["linear"])


def test_variance_range_plot_is_log_beta_and_log_beta_tilde():
    d = create_diffusion()
    fig = viz_training.variance_range_plot(d, zoom=40)
    full, zoom = fig.axes
    hi, lo = [ln.get_ydata() for ln in full.get_lines()]
    np.testing.assert_allclose(hi, d.log_betas.numpy())
    np.testing.assert_allclose(lo, d.posterior_log_variance_clipped.numpy())
    assert (hi >= lo - 1e-12).all()  # β̃_t ≤ β_t: the range is never empty
    assert len(zoom.get_lines()[0].get_xdata()) == 40
    with pytest.raises(ValueError, match="zoom"):
        viz_training.variance_range_plot(d, zoom=1)
    with pytest.raises(TypeError, match="GaussianDiffusion"):
        viz_training.variance_range_plot("linear")


def test_noising_strip_is_q_sample():
    from ditlab.diffusion import create_diffusion

    d = create_diffusion()
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    noise = torch.randn(2, 1, 8, 8)
    ts = (0, 300, 999)
    fig = viz_training.noising_strip(x0, d, ts, noise=noise)
    assert len(fig.axes) == 2 * 3 and fig.axes[1].get_title().startswith("t = 300")
    for i in range(2):
        for j, t in enumerate(ts):
            want = d.q_sample(x0[i:i + 1], torch.tensor([t]), noise[i:i + 1])[0, 0]
            np.testing.assert_allclose(_images(fig.axes[i * 3 + j])[0], ((want + 1) / 2).clamp(0, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(_images(fig.axes[0])[0], ((x0[0, 0] + 1) / 2).numpy(), atol=0.05)  # t = 0: ᾱ ≈ 1
    same = viz_training.noising_strip(x0[0], d, (500,), seed=3)  # one (C, H, W) image; seeded noise is reproducible
    again = viz_training.noising_strip(x0[0], d, (500,), seed=3)
    np.testing.assert_array_equal(_images(same.axes[0])[0], _images(again.axes[0])[0])
    with pytest.raises(ValueError, match="timesteps"):
        viz_training.noising_strip(x0, d, (1000,))


def test_trajectory_strip_picks_steps_and_rows():
    traj = [dict(t=t, x_t=torch.full((3, 1, 4, 4), t / 1000), pred_x0=torch.full((3, 1, 4, 4), -t / 1000))
            for t in range(900, -1, -100)]  # 10 steps
    fig = viz_training.trajectory_strip(traj, every=4, index=[0, 2])
    cols = [0, 4, 8, 9]  # every 4th step and always the last
    assert len(fig.axes) == 4 * len(cols)
    assert [ax.get_title() for ax in fig.axes[:len(cols)]] == [f"t = {traj[s]['t']}" for s in cols]
    row_labels = [fig.axes[r * len(cols)].get_ylabel() for r in range(4)]
    assert row_labels == ["x_t  (#0)", "x̂_0  (#0)", "x_t  (#2)", "x̂_0  (#2)"]
    for j, s in enumerate(cols):
        np.testing.assert_allclose(_images(fig.axes[j])[0], (traj[s]["t"] / 1000 + 1) / 2, atol=1e-6)
        np.testing.assert_allclose(_images(fig.axes[len(cols) + j])[0], (-traj[s]["t"] / 1000 + 1) / 2, atol=1e-6)
    assert len(viz_training.trajectory_strip(traj, max_cols=4).axes) == 2 * 4  # default every: about max_cols columns
    with pytest.raises(ValueError, match="trajectory"):
        viz_training.trajectory_strip([dict(t=1, x_t=torch.zeros(1, 1, 4, 4))])
    with pytest.raises(ValueError, match="index"):
        viz_training.trajectory_strip(traj, index=3)


def test_sample_trajectory_feeds_trajectory_strip():
    from ditlab.model import DiT
    from ditlab.sampling import sample

    model = DiT(get_config("DiT-Mi/8", depth=1, hidden_size=32, num_heads=2)).eval()
    out = sample(model, [1, 2], steps=3, cfg_scale=1.0, progress=False, trajectory=True)
    fig = viz_training.trajectory_strip(out.trajectory, index=1)
    assert len(fig.axes) == 2 * 3
    first = ((out.trajectory[0]["x_t"][1, 0] + 1) / 2).clamp(0, 1).numpy()
    np.testing.assert_allclose(_images(fig.axes[0])[0], first, atol=1e-6)


def test_image_rows():
    rows = [torch.zeros(3, 1, 4, 4), torch.ones(2, 1, 4, 4)]
    fig = viz.image_rows(rows, row_labels=["a", "b"], col_labels=["x", "y", "z"])
    assert len(fig.axes) == 6 and fig.axes[3].get_ylabel() == "b" and fig.axes[2].get_title() == "z"
    assert _images(fig.axes[5]) == [] and _images(fig.axes[4])[0].min() == 1  # short row: empty slot
    with pytest.raises(ValueError, match="row_labels"):
        viz.image_rows(rows, row_labels=["a"])


def test_training_dashboard_loss_and_sample_grid():
    from ditlab.io import make_grid

    rows = _rows()
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    fig = viz_training.training_dashboard(rows, images, step=50, total_steps=200, nrow=3)
    ax_loss, ax_img = fig.axes
    assert ax_loss.get_yscale() == "log" and len(ax_loss.get_lines()) == 3
    assert "step 50 / 200" in ax_loss.get_title() and "100 img/s" in ax_loss.get_title()
    assert "step 50" in ax_img.get_title()
    grid, inside = _images(ax_img)[0], make_grid(torch.ones_like(images), nrow=3).numpy()[..., 0] > 0
    np.testing.assert_array_equal(grid[inside], make_grid(images, nrow=3).numpy()[..., 0][inside])  # 2 rows × 3
    assert (grid[~inside] == 96).all()  # gray gaps between the images
    empty = viz_training.training_dashboard([], None)  # before the first callback
    assert [len(ax.get_lines()) for ax in empty.axes] == [0, 0] and not _images(empty.axes[1])
    assert "waiting" in empty.axes[0].texts[0].get_text()
    rgb = viz_training.training_dashboard(rows[:1], torch.zeros(4, 3, 8, 8))
    assert _images(rgb.axes[1])[0].shape[-1] == 3
    with pytest.raises(ValueError, match="images"):
        viz_training.training_dashboard(rows, torch.zeros(4, 2, 8, 8))


def test_latent_channels_shows_each_channel_on_one_symmetric_scale():
    from ditlab.teach import viz_latent

    x, z = torch.rand(3, 1, 8, 8) * 2 - 1, torch.randn(3, 4, 2, 2)
    fig = viz_latent.latent_channels(x, z, recon=x, n=2)
    axes = fig.axes
    assert len(axes) == 2 * 6 and [a.get_title() for a in axes[:6]] == ["image", *[f"channel {k}" for k in range(4)],
                                                                          "decoded"]
    np.testing.assert_allclose(_images(axes[7])[0], z[1, 0].numpy(), rtol=1e-6)  # row 1, channel 0
    lim = z[:2].abs().max().item()
    assert axes[7].get_images()[0].get_clim() == pytest.approx((-lim, lim))
    with pytest.raises(ValueError, match="same N"):
        viz_latent.latent_channels(x, z[:2])


def test_equal_compute_bars_hold_the_runs_numbers():
    from ditlab.teach import viz_latent

    rows = [dict(name="pixels", accuracy=0.4, accuracy_unguided=0.2, seconds=30, chance=0.1, real_accuracy=0.99),
            dict(name="latents", accuracy=0.9, accuracy_unguided=0.7, seconds=50, chance=0.1, real_accuracy=0.99)]
    acc, secs = viz_latent.equal_compute_bars(rows).axes
    heights = [p.get_height() for p in acc.patches]
    assert heights == [0.4, 0.9, 0.2, 0.7] and [p.get_height() for p in secs.patches] == [30, 50]
