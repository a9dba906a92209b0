"""No silent garbage from sampling (issue 26): out-of-range settings are refused up front with the allowed range,
samples that overflow are never written, output files are what their names say, and the work is bounded. Each
refusal through the API and through the CLI (a subprocess: its exit code), a file already there unchanged."""
import hashlib
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import FIXTURES, ROOT
from PIL import Image

import ditlab.sampling as sampling
from ditlab import DiT, DiTConfig
from ditlab.checkpoint import save_model
from ditlab.io import make_grid, save_grid
from ditlab.sampling import MAX_IMAGES, Guidance, Sampler, sample

CKPT = str(FIXTURES / "DiT-tiny-release.pt")
CFG = DiTConfig(input_size=8, patch_size=4, in_channels=1, hidden_size=32, depth=1, num_heads=2, num_classes=3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DiT(CFG).eval()


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory):
    """Finite weights whose outputs overflow float32: every sample is inf or NaN."""
    m = DiT(CFG)
    with torch.no_grad():
        m.final_layer.linear.weight.fill_(1e30)
        m.final_layer.linear.bias.fill_(1e30)
    return save_model(m, tmp_path_factory.mktemp("overflow") / "overflow.safetensors")


def checksum(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def cli(*argv, ckpt=CKPT):
    """`ditlab sample` in a subprocess -> (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "ditlab", "sample", "--ckpt", str(ckpt), "--steps", "2", *argv],
                       capture_output=True, text=True, env=env, timeout=300)
    return r.returncode, r.stderr


# ---- settings out of range: refused before any work, with the allowed range -----------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (lambda: dict(cfg_scale=1e30), r"cfg_scale must be a number in \[0, 100.0\], got 1e\+30"),
    (lambda: dict(cfg_scale=-1.0), r"cfg_scale must be a number in \[0, 100.0\]"),
    (lambda: dict(cfg_scale=Guidance(4.0, channels=0)), r"guidance_channels must be an int >= 1"),
    (lambda: dict(sampler=Sampler("ddim", eta=5.0)), r"eta must be a number in \[0, 1\], got 5.0"),
    (lambda: dict(sampler=Sampler(time_shift=float("inf"))), r"time_shift must be a finite number, got inf"),
    (lambda: dict(sampler=Sampler(time_shift=1e9)), r"time_shift must be a number in \[0.01, 100.0\]"),
    (lambda: dict(sampler=Sampler(diffusion_form="huge")), r"diffusion_form must be one of \['constant'"),
    (lambda: dict(steps=10**6), r"steps must be an int in \[1, 1000\]"),
])
def test_out_of_range_settings_are_refused_with_the_allowed_range(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample(model, [0], progress=False, **kwargs())  # the settings objects refuse when they are made


@pytest.mark.parametrize("argv, match", [
    (["--cfg-scale", "1e30"], r"cfg_scale must be a number in \[0, 100.0\]"),
    (["--eta", "5"], r"eta must be a number in \[0, 1\]"),
    (["--time-shift", "inf"], r"time_shift must be a finite number"),
    (["--per-class", "1000000"], rf"--per-class must be an int in \[1, {MAX_IMAGES}\]"),
    (["--out", "grid.gif"], r"the extension of --out 'grid.gif' must be one of \['.png', '.jpg', '.jpeg'\]"),
    (["--out", "grid"], r"the extension of --out 'grid' must be one of"),
])
def test_cli_refuses_bad_settings_before_loading_the_model(tmp_path, argv, match):
    code, err = cli(*argv, ckpt=tmp_path / "missing.pt")  # the checkpoint is never opened
    assert code != 0 and "sample: error:" in err
    assert re.search(match, err), err


# ---- samples that overflow are never written -------------------------------------------------------------
def test_samples_that_overflow_raise_instead_of_returning_garbage(overflowing):
    with pytest.raises(FloatingPointError, match="NaN or infinite.*lower cfg_scale"):
        sample(overflowing, [0, 1], steps=2, progress=False)


def test_cli_writes_no_grid_from_overflowing_samples(tmp_path, overflowing):
    out = tmp_path / "grid.png"
    save_grid(torch.zeros(1, 1, 4, 4), out)
    before = checksum(out)
    code, err = cli("--labels", "0,1", "--out", str(out), ckpt=overflowing)
    assert code != 0 and "NaN or infinite" in err
    assert checksum(out) == before


# ---- output files are what their names say ----------------------------------------------------------------
def test_grids_are_png_or_jpeg_by_extension(model, tmp_path):
    images = sample(model, [0, 1, 2], steps=2, progress=False).images
    for name, fmt in [("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.JPEG", "JPEG")]:
        assert Image.open(save_grid(images, tmp_path / name)).format == fmt
    for name in ("d.gif", "e", "f.safetensors"):
        with pytest.raises(ValueError, match=r"extension of path .* must be one of \['.png', '.jpg', '.jpeg'\]"):
            save_grid(images, tmp_path / name)
        assert not (tmp_path / name).exists()


def test_an_existing_file_that_is_not_an_image_is_kept(model, tmp_path):
    out = sample(model, [0], steps=2, progress=False)
    fake = tmp_path / "grid.png"
    fake.write_bytes(b"weights, not pixels")
    with pytest.raises(FileExistsError, match="is not a PNG or JPEG image.*overwrite=True"):
        out.save(fake)
    assert fake.read_bytes() == b"weights, not pixels"
    assert Image.open(out.save(fake, overwrite=True)).format == "PNG"
    assert Image.open(out.save(fake)).format == "PNG"  # an image is replaced by a new image


def test_cli_writes_jpeg_and_keeps_files_that_are_not_images(tmp_path):
    code, err = cli("--labels", "1,2", "--out", str(tmp_path / "grid.jpg"))
    assert code == 0, err
    assert Image.open(tmp_path / "grid.jpg").format == "JPEG"
    model_file = tmp_path / "model.safetensors"
    save_model(DiT(CFG), model_file)
    fake_png = tmp_path / "old.png"
    fake_png.write_bytes(b"not an image")
    sums = {p: checksum(p) for p in (model_file, fake_png)}
    for argv, match in [(["--out", str(model_file)], "extension of --out"),
                        (["--out", str(fake_png)], "is not a PNG or JPEG image.*--overwrite"),
                        (["--out", str(tmp_path / "new.png"), "--tensors", str(model_file)],
                         "--tensors .* exists: pass --overwrite")]:
        code, err = cli("--labels", "1", *argv)
        assert code != 0 and re.search(match, err), err
    assert {p: checksum(p) for p in sums} == sums and not (tmp_path / "new.png").exists()
    code, err = cli("--labels", "1", "--out", str(fake_png), "--overwrite")
    assert code == 0 and Image.open(fake_png).format == "PNG", err


# ---- bounded work -------------------------------------------------------------------------------------------
def test_huge_label_lists_and_grids_are_refused_before_sampling(model):
    with pytest.raises(ValueError, match=rf"len\(labels\) must be an int in \[1, {MAX_IMAGES}\], got {MAX_IMAGES + 1}"):
        sample(model, [0] * (MAX_IMAGES + 1), progress=False)
    with pytest.raises(ValueError, match="len\\(labels\\)"):
        sample(model, torch.zeros(10**6, dtype=torch.long), progress=False)  # refused without a 10^6 list
    with pytest.raises(ValueError, match="a grid of 4 images of 8x8 with nrow=1000000000 .* more than"):
        make_grid(torch.zeros(4, 1, 8, 8), nrow=10**9)


def test_cli_refuses_huge_label_lists_and_grids(tmp_path):
    out = tmp_path / "grid.png"
    code, err = cli("--labels", ",".join(["1"] * (MAX_IMAGES + 1)), "--out", str(out))
    assert code != 0 and f"must be an int <= {MAX_IMAGES}" in err and "--labels" in err
    code, err = cli("--labels", "1,2", "--nrow", str(10**9), "--out", str(out))
    assert code != 0 and "nrow=1000000000" in err and "more than" in err
    assert not out.exists()


def test_many_labels_are_sampled_in_batches(model, monkeypatch):
    one = sample(model, [0, 1, 2, 0, 1], steps=2, cfg_scale=1.0, seed=3, progress=False)
    monkeypatch.setattr(sampling, "BATCH", 2)
    a = sample(model, [0, 1, 2, 0, 1], steps=2, cfg_scale=1.0, seed=3, progress=False)
    b = sample(model, [0, 1, 2, 0, 1], steps=2, cfg_scale=1.0, seed=3, progress=False)
    assert a.images.shape == one.images.shape == (5, 1, 8, 8) and a.labels.tolist() == [0, 1, 2, 0, 1]
    assert torch.equal(a.images, b.images)  # reproducible per seed, batch after batch
    with pytest.raises(ValueError, match="trajectory=True records at most 2 images"):
        sample(model, [0, 1, 2], steps=2, trajectory=True, progress=False)
