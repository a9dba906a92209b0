"""The kit's own small VAEs (`ditlab vae`, ditlab/training/vae.py + ditlab/data/autoencoder.py) and latent DiT runs
end to end (`ditlab train --vae digits-vae`, marked slow: about 10 s): offline, seconds."""
import json
import math

import pytest
import torch
from conftest import MNIST, needs_mnist
from PIL import Image

from ditlab.checkpoint import load_model, read_vae
from ditlab.cli import main
from ditlab.data import (ImageDataset, encode_latents, load_dataset, load_vae, resolve_vae, shipped_vaes,
                         small_vae_config)
from ditlab.data.latents import LatentDataset, vae_fingerprint
from ditlab.eval.verdict import judge_source
from ditlab.training import TrainConfig
from ditlab.training.vae import evaluate_vae, psnr, train_vae

# measured on the shipped digits-vae (data/checkpoints/vae/digits-vae.json): PSNR of the test digits' reconstructions
DIGITS_VAE_PSNR = 30.0  # dB; measured 32.48 on the 1000 first test digits (fp16 weights: the same)
MNIST_VAE_PSNR = 27.0  # dB; measured 29.36 on the 1000 first MNIST test images at 32 px


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A VAE trained for 3 steps on 64 digits (the judge: the 20-step smoke one)."""
    tmp = tmp_path_factory.mktemp("vae")
    mp = pytest.MonkeyPatch()
    mp.setenv("DITLAB_CACHE", str(tmp / "cache"))
    r = train_vae(data="digits", out_dir=str(tmp / "run"), steps=3, batch_size=16, limit=64, eval_images=32,
                  progress=False)
    yield r
    mp.undo()


def test_train_vae_writes_a_run_that_round_trips(trained):
    out, card = trained["out_dir"], trained["card"]
    assert {p.name for p in out.iterdir()} >= {"vae.safetensors", "vae.json", "reconstructions.png", "log.csv"}
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())  # atomic writes leave no temp file
    assert json.loads((out / "vae.json").read_text()) == card
    loaded = load_vae(out)  # the run folder, the file, and the folder as given
    from_file = load_vae(out / "vae.safetensors")
    assert vae_fingerprint(loaded) == vae_fingerprint(trained["vae"]) == vae_fingerprint(from_file)
    assert loaded.config.scaling_factor == pytest.approx(card["scale_factor"]) != 1.0
    assert loaded.card["steps"] == 3 and card["latent_shape"] == [4, 8, 8] and card["factor"] == 4
    assert set(card["eval"]) >= {"psnr", "judge_accuracy_originals", "judge_accuracy_reconstructions"}
    assert Image.open(out / "reconstructions.png").size == (16 * 34, 2 * 34)  # 16 originals over 16 recons


def test_scale_factor_gives_unit_std_latents_of_shape_n_4_8_8(trained, tmp_path):
    vae = load_vae(trained["out_dir"])
    digits = load_dataset("digits", limit=64)  # the images it was trained on (and scaled on)
    lat = encode_latents(digits, vae, cache_dir=tmp_path, progress=False)
    assert lat.mean.shape == lat.std.shape == (64, 4, 8, 8)  # 32 px / f = 4
    z = lat.get_batch(torch.arange(64), generator=torch.Generator().manual_seed(0))[0]
    assert z.std().item() == pytest.approx(1.0, abs=0.05)
    assert lat.decode(lat.mean[:2]).shape == (2, 1, 32, 32) and (lat.pixel_size, lat.pixel_channels) == (32, 1)


def test_psnr_on_known_images():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 10 log10(4 / 0.01) = 26.02 dB (peak-to-peak 2 in [-1, 1])
    y[1] += 1.0  # MSE 1 -> 10 log10(4) = 6.02 dB
    torch.testing.assert_close(psnr(x, y), torch.tensor([10 * math.log10(400), 10 * math.log10(4)]))
    assert psnr(x, x).min() > 90  # identical images: the MSE floor (1e-10), not inf


def test_small_vae_config_shapes_and_refusals():
    from ditlab.data import build_vae

    vae = build_vae(small_vae_config(channels=3, factor=8))
    with torch.no_grad():
        post = vae.encode(torch.zeros(2, 3, 32, 32)).latent_dist
    assert post.mean.shape == (2, 4, 4, 4)  # f = 8
    with pytest.raises(ValueError, match="factor"):
        small_vae_config(factor=2)
    with pytest.raises(ValueError, match="channels"):
        small_vae_config(channels=2)
    with pytest.raises(ValueError, match="3 widths"):
        small_vae_config(factor=4, widths=(16, 32))


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "steps must be"),
    (["--factor", "3"], "factor must be one of"),
    (["--kl-weight", "-1"], "kl_weight"),
    (["--data", "no-such-data"], "unknown dataset"),
    (["--data", "missing/mnist.npz"], "not found"),
    (["--channels", "2"], "channels must be one of"),
])
def test_cli_refuses_bad_inputs(argv, message, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["vae", "--out-dir", str(tmp_path / "v"), *argv])
    assert str(err.value).startswith("ditlab vae: error: ") and message in str(err.value)
    assert not (tmp_path / "v").exists()  # refused before anything was written


def test_cli_smoke_and_no_silent_overwrite(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "v"
    argv = ["vae", "--data", "shapes", "--limit", "40", "--steps", "2", "--batch-size", "8", "--eval-images", "8",
            "--out-dir", str(out)]
    main(argv)
    text = capsys.readouterr().out
    assert "PSNR" in text and f"--vae {out}" in text and "judge" not in text  # no judge for shapes
    assert load_vae(out).config.in_channels == 3
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert "--overwrite" in str(err.value) and "FileExistsError" not in str(err.value)
    main(argv + ["--overwrite", "--no-progress"])


def test_resolve_vae_kinds(trained, tmp_path):
    assert resolve_vae("digits-vae")[0] == "ditlab" and "digits-vae" in shipped_vaes()
    assert resolve_vae(trained["out_dir"]) == ("ditlab", trained["out_dir"] / "vae.safetensors")
    assert resolve_vae("stabilityai/sd-vae-ft-ema") == ("hub", "stabilityai/sd-vae-ft-ema")
    with pytest.raises(FileNotFoundError, match="did you mean 'digits-vae'"):
        resolve_vae("digits-vea")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        resolve_vae(tmp_path / "empty")
    with pytest.raises(ConnectionError, match="sd-vae-ft-ema") as err:  # the SD VAE offline: fails fast, says why
        load_vae("stabilityai/sd-vae-ft-ema")
    assert "local folder" in str(err.value) and "digits-vae" in str(err.value)


def test_shipped_digits_vae_reconstructs_the_test_digits():
    vae = load_vae("digits-vae")
    assert vae.card["name"] == "digits-vae" and vae.config.scaling_factor == pytest.approx(vae.card["scale_factor"])
    test = load_dataset("digits", split="test")
    x = test.get_batch(torch.arange(200))[0]
    assert evaluate_vae(vae, x)["psnr"] > DIGITS_VAE_PSNR


@needs_mnist
def test_shipped_mnist_vae_reconstructs_mnist_at_32_px(tmp_path):
    vae = load_vae("mnist-vae")
    test = load_dataset(MNIST, split="test", image_size=32, cache_dir=tmp_path)
    assert evaluate_vae(vae, test.get_batch(torch.arange(200))[0])["psnr"] > MNIST_VAE_PSNR
    with pytest.raises(ValueError, match="image_size=32"):  # MNIST's own 28 px: refused, not silently mis-encoded
        encode_latents(load_dataset(MNIST, split="test", limit=4, cache_dir=tmp_path), vae, cache_dir=tmp_path)


def test_judge_source_takes_latent_runs_with_a_decoder():
    cfg = TrainConfig(data="digits", vae="digits-vae")
    lat = LatentDataset(torch.zeros(2, 4, 8, 8), torch.ones(2, 4, 8, 8), torch.tensor([0, 1]), list("01"),
                        name="digits")
    assert judge_source(cfg, lat)[0] is None and "decode" in judge_source(cfg, lat)[1]
    lat.vae = load_vae("digits-vae")
    assert judge_source(cfg, lat) == ("digits", "")


@pytest.mark.slow  # ~10 s: trains, judges, trains again, samples
def test_train_on_shipped_vae_latents_end_to_end(tmp_path, monkeypatch, capsys):
    from diffusers import AutoencoderKL

    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--vae", "digits-vae", "--steps", "3", "--limit", "128", "--batch-size", "16", "--model",
            "DiT-Pico/2", "--sample-steps", "2", "--sample-every", "3", "--out-dir", "run"]
    main(argv)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["verdict"]["status"] not in ("skipped", "failed"), metrics["verdict"]
    assert metrics["verdict"]["judge"] == "digits"
    assert Image.open(tmp_path / "run" / "samples.png").size == (10 * 34, 10 * 34)  # decoded 32 px digits
    assert Image.open(tmp_path / "run" / "samples" / "step_0000003.png").mode == "L"  # 1-channel pixels, not latents
    model = load_model(tmp_path / "run")
    assert (model.config.in_channels, model.config.input_size, model.vae) == (4, 8, "digits-vae")
    assert read_vae(tmp_path / "run" / "ema.safetensors") == "digits-vae"
    # the latents were cached: a second run does not encode again
    monkeypatch.setattr(AutoencoderKL, "encode", lambda *a, **k: pytest.fail("latents were encoded again"))
    main(argv[:-1] + ["run2", "--no-verdict"])
    capsys.readouterr()
    # `ditlab sample` decodes a latent checkpoint with the VAE it records
    main(["sample", "--ckpt", "run", "--per-class", "1", "--steps", "2", "--out", "s.png", "--nrow", "10"])
    assert Image.open(tmp_path / "s.png").size == (10 * 34, 34)


@pytest.mark.parametrize("vae, error", [("digits-vea", "did you mean 'digits-vae'"), (".", "is not a VAE")])
def test_train_refuses_a_bad_vae_before_loading_data(vae, error, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as err:
        main(["train", "--vae", vae, "--steps", "1", "--out-dir", "run"])
    assert error in str(err.value) and not (tmp_path / "run").exists()


def test_pixel_checkpoints_record_no_vae():
    from ditlab.checkpoint import checkpoint_dir

    assert read_vae(checkpoint_dir() / "digits-p4.safetensors") is None
    assert load_model("digits-p4").vae is None


def test_encode_refuses_a_dataset_the_vae_does_not_take(trained):
    rgb = ImageDataset(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 1]), list("01"))
    with pytest.raises(ValueError, match="channels=1"):
        encode_latents(rgb, load_vae(trained["out_dir"]), progress=False)
