"""ditlab.viz: every plot returns a Figure (no pyplot state) whose axes hold the data asked for."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ditlab import viz  # noqa: E402
from ditlab.configs import get_config  # noqa: E402
from ditlab.flops import estimate_flops, paper_table  # noqa: E402
from ditlab.patchify import patchify  # noqa: E402
from ditlab.posemb import sincos_2d  # noqa: E402


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
    fig = viz.embedding_heatmap(table, row_labels=[*range(10), "∅"], title="labels")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap + colorbar
    np.testing.assert_allclose(_images(ax)[0], table.numpy(), atol=1e-6)
    assert ax.get_yticklabels()[-1].get_text() == "∅" and ax.get_title() == "labels"
    with pytest.raises(ValueError, match="table"):
        viz.embedding_heatmap(torch.zeros(2, 3, 4))


def test_similarity_heatmaps_values():
    grid = (4, 6)
    pos = sincos_2d(32, grid)
    fig = viz.similarity_heatmaps(pos[None], grid, [0, (2, 3)])
    assert len(fig.axes) == 3  # two maps + colorbar
    sim = viz.cosine_similarity_matrix(pos)
    np.testing.assert_allclose(np.diag(sim), 1, atol=1e-6)
    for ax, i in zip(fig.axes[:2], (0, 2 * 6 + 3)):
        (img,) = _images(ax)
        assert img.shape == grid
        np.testing.assert_allclose(img, sim[i].reshape(grid), atol=1e-6)
        assert np.unravel_index(np.argmax(img), grid) == divmod(i, 6)  # most similar to itself
    with pytest.raises(ValueError, match="tokens"):
        viz.similarity_heatmaps(pos, grid, [24])
    with pytest.raises(ValueError, match="pos_embed"):
        viz.similarity_heatmaps(pos, 4, [0])


def test_gflops_vs_patch_lines_match_estimate_and_paper():
    fig = viz.gflops_vs_patch(sizes=("S", "XL"), patch_sizes=(8, 2, 4))
    lines = fig.axes[0].get_lines()
    model_lines = [ln for ln in lines if ln.get_label().startswith("DiT-")]
    assert [ln.get_label() for ln in model_lines] == ["DiT-S", "DiT-XL"]
    for ln, s in zip(model_lines, ("S", "XL")):
        assert list(ln.get_xdata()) == [2, 4, 8]
        want = [estimate_flops(get_config(f"DiT-{s}/{p}")) / 1e9 for p in (2, 4, 8)]
        np.testing.assert_allclose(ln.get_ydata(), want)
    paper = [ln for ln in lines if not ln.get_label().startswith("DiT-")]
    reported = {r["model"]: r["gflops"] for r in paper_table() if r["block"] == "adaLN-Zero" and r["image_size"] == "256"}
    assert len(paper) == 2
    np.testing.assert_allclose(paper[1].get_ydata(), [reported[f"DiT-XL/{p}"] for p in (2, 4, 8)])
    assert len(viz.gflops_vs_patch(paper=False, input_size=16).axes[0].get_lines()) == 4


def test_block_comparison_reproduces_table4():
    rows = viz.block_rows()
    assert sorted(r["block"] for r in rows) == sorted(["adaLN-Zero", "adaLN", "cross-attention", "in-context"])
    for r in rows:
        assert r["gflops"] == pytest.approx(r["paper_gflops"], rel=5e-3)
        assert r["params_m"] == pytest.approx(r["paper_params_m"], rel=1e-2)
    fig = viz.block_comparison_plot(rows)
    assert len(fig.axes) == 3
    gflops_bars = fig.axes[0].patches
    assert len(gflops_bars) == 2 * len(rows)
    np.testing.assert_allclose([b.get_height() for b in gflops_bars[:len(rows)]], [r["gflops"] for r in rows])
    fid = {r["block"]: r["fid"] for r in rows}
    assert min(fid, key=fid.get) == "adaLN-Zero"  # paper Fig. 5 / Table 4: best FID
    assert [b.get_height() for b in fig.axes[2].patches] == [r["fid"] for r in rows]
    with pytest.raises(ValueError, match="rows"):
        viz.block_comparison_plot([])
