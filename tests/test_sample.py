"""Sampling: reproducible per seed, trajectories, class names, official checkpoints, CLI and bad input."""
import pytest
import torch
from conftest import FIXTURES

from ditlab import DiT, DiTConfig
from ditlab.cli import main
from ditlab.io import make_grid
from ditlab.sampling import Guidance, parse_labels, sample

CFG = DiTConfig(input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=2, num_heads=2, num_classes=3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = DiT(CFG)
    for p in m.parameters():  # perturb the zero-inits so the samples depend on labels and weights
        torch.nn.init.normal_(p, std=0.01) if p.abs().sum() == 0 else None
    m.classes = ["cat", "dog", "fox"]
    return m.eval()


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_reproducible_per_seed(model, sampler):
    a = sample(model, [0, 1, 2], steps=5, sampler=sampler, seed=1, progress=False)
    b = sample(model, [0, 1, 2], steps=5, sampler=sampler, seed=1, progress=False)
    c = sample(model, [0, 1, 2], steps=5, sampler=sampler, seed=2, progress=False)
    assert a.images.shape == (3, 1, 8, 8) and a.images.abs().max() <= 1
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


def test_guidance_and_labels_change_samples(model):
    base = sample(model, [0, 0], steps=4, cfg_scale=1.0, progress=False).images
    guided = sample(model, [0, 0], steps=4, cfg_scale=4.0, progress=False).images
    other = sample(model, [1, 1], steps=4, cfg_scale=1.0, progress=False).images
    assert not torch.allclose(base, guided) and not torch.allclose(base, other)


def test_trajectory_records_every_step(model):
    out = sample(model, ["cat", "DOG"], steps=6, trajectory=True, progress=False)
    assert out.labels.tolist() == [0, 1]
    assert len(out.trajectory) == 6
    ts = [s["t"] for s in out.trajectory]
    assert ts == sorted(ts, reverse=True) and ts[0] == 999 and ts[-1] == 0
    assert out.trajectory[0]["x_t"].shape == (2, 1, 8, 8)
    torch.testing.assert_close(out.trajectory[-1]["pred_x0"].clamp(-1, 1), out.images)


def test_samples_from_official_checkpoint_with_official_guidance():
    path = FIXTURES / "DiT-tiny-release.pt"
    official = Guidance(4.0, channels=3)
    a = sample(path, [1, 2], steps=5, sampler="ddpm", cfg_scale=official, progress=False)
    b = sample(path, [1, 2], steps=5, sampler="ddpm", cfg_scale=4.0, progress=False)
    assert a.images.shape == (2, 4, 8, 8)
    assert torch.equal(a.images, sample(path, [1, 2], steps=5, sampler="ddpm", cfg_scale=official,
                                        progress=False).images)
    assert not torch.allclose(a.images, b.images)


def test_make_grid_layout():
    imgs = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 1.0)])
    g = make_grid(imgs, nrow=2, pad=0)
    assert g.shape == (8, 8, 3) and g.dtype == torch.uint8
    assert g[0, 0, 0] == 0 and g[0, 4, 0] == 128 and g[4, 0, 0] == 255 and g[4, 4, 0] == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(labels=[5]), r"out of range: valid ids are 0\.\.2"),
    (dict(labels=["wolf"]), "unknown class name 'wolf'"),
    (dict(labels=[0], steps=0), r"steps must be an int in \[1, 1000\]"),
    (dict(labels=[0], sampler="rk4"), "sampler must be one of"),
    (dict(labels=[0], sampler="euler"), r"does not fit this model: it was trained with objective 'ddpm'"),
])
def test_bad_input(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample(model, progress=False, **kwargs)


def test_cfg_needs_null_class():
    m = DiT(CFG.replace(class_dropout_prob=0.0))
    with pytest.raises(ValueError, match="needs a model trained with label dropout"):
        sample(m, [0], cfg_scale=4.0, progress=False)
    assert sample(m, [0], steps=2, cfg_scale=1.0, progress=False).images.shape == (1, 1, 8, 8)


def test_parse_labels_accepts_numeric_strings():
    assert parse_labels(["1", 2, "fox"], 3, ["cat", "dog", "fox"]).tolist() == [1, 2, 2]


def test_cli_sample_writes_png(tmp_path, capsys):
    out = tmp_path / "grid.png"
    main(["sample", "--ckpt", str(FIXTURES / "DiT-tiny-release.pt"), "--labels", "1,2,3", "--steps", "3",
          "--guidance-channels", "3", "--nrow", "3", "--out", str(out), "--tensors", str(tmp_path / "s.safetensors")])
    from PIL import Image

    assert Image.open(out).size == (3 * 10, 10)
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="out of range"):
        main(["sample", "--ckpt", str(FIXTURES / "DiT-tiny-release.pt"), "--labels", "10", "--out", str(out)])


def test_imagenet_names_for_1000_class_models():
    m = DiT(DiTConfig(input_size=4, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2))
    out = sample(m, ["golden retriever", "Tabby", 1], steps=1, cfg_scale=1.0, progress=False)
    assert out.labels.tolist() == [207, 281, 1]
    with pytest.raises(ValueError, match=r"unknown class name 'dragon'.*\.\.\."):
        sample(m, ["dragon"], steps=1, progress=False)
