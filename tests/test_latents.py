"""Tests for ditlab.data.latents with a small randomly initialised AutoencoderKL (offline, seconds)."""

import pytest
import torch

from ditlab.data import ImageDataset, load_dataset
from ditlab.data.latents import (SD_SCALE_FACTOR, LatentDataset, decode_latents, encode_latents, load_vae,
                                 vae_fingerprint)


def tiny_vae(seed=0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         block_out_channels=(32, 64), latent_channels=4, layers_per_block=1, norm_num_groups=32,
                         sample_size=64).eval()


@pytest.fixture(scope="module")
def vae():
    return tiny_vae(0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    small = load_dataset("shapes", split="test", limit=6, cache_dir=tmp_path_factory.mktemp("c"))  # 32 px
    big = small.images.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # (6, 3, 64, 64)
    return ImageDataset(big, small.labels, small.classes, name="shapes64")


def count_encodes(vae, monkeypatch):
    calls, encode = [], vae.encode
    monkeypatch.setattr(vae, "encode", lambda x: calls.append(len(x)) or encode(x))
    return calls


def test_shapes_and_scale_factor(vae, images, tmp_path):
    assert vae.config.scaling_factor == SD_SCALE_FACTOR == 0.18215
    lat = encode_latents(images, vae, batch_size=4, cache_dir=tmp_path, progress=False)
    assert isinstance(lat, LatentDataset) and len(lat) == 6
    assert lat.mean.shape == lat.std.shape == (6, 4, 32, 32)  # 64 px / downsampling factor 2
    assert lat.channels == 4 and lat.image_size == 32 and lat.classes == images.classes
    assert torch.equal(lat.labels, images.labels) and (lat.std > 0).all()
    with torch.no_grad():
        post = vae.encode(images.get_batch(torch.arange(6))[0]).latent_dist
    torch.testing.assert_close(lat.mean, post.mean * 0.18215)
    torch.testing.assert_close(lat.std, post.std * 0.18215)
    raw = encode_latents(images, vae, cache_dir=tmp_path, scale_factor=1.0, progress=False)
    torch.testing.assert_close(lat.mean, raw.mean * 0.18215)


def test_cache_hit_skips_encoder(vae, images, tmp_path, monkeypatch):
    calls = count_encodes(vae, monkeypatch)
    first = encode_latents(images, vae, batch_size=4, cache_dir=tmp_path, progress=False)
    assert calls == [4, 2]
    files = list((tmp_path / "latents").iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"  # written atomically, no temp left
    again = encode_latents(images, vae, batch_size=4, cache_dir=tmp_path, progress=False)
    assert calls == [4, 2]  # read from disk, not re-encoded
    assert torch.equal(first.mean, again.mean) and torch.equal(first.std, again.std)
    assert again.classes == images.classes and again.scale_factor == 0.18215
    # another dataset or another VAE means another cache entry
    fewer = ImageDataset(images.images[:3], images.labels[:3], images.classes, name=images.name)
    encode_latents(fewer, vae, batch_size=4, cache_dir=tmp_path, progress=False)
    assert calls == [4, 2, 3]
    other = tiny_vae(1)
    assert vae_fingerprint(other) != vae_fingerprint(vae) == vae_fingerprint(tiny_vae(0))
    encode_latents(images, other, batch_size=8, cache_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "latents").iterdir())) == 3


def test_deterministic_and_posterior_sampling(vae, images, tmp_path):
    a = encode_latents(images, vae, batch_size=4, cache_dir=tmp_path / "a", progress=False)
    b = encode_latents(images, vae, batch_size=3, cache_dir=tmp_path / "b", progress=False)
    torch.testing.assert_close(a.mean, b.mean)  # batching does not change the result
    idx = torch.tensor([0, 2, 5])
    z1, y1 = a.get_batch(idx, generator=torch.Generator().manual_seed(7))
    z2, _ = a.get_batch(idx, generator=torch.Generator().manual_seed(7))
    z3, _ = a.get_batch(idx, generator=torch.Generator().manual_seed(8))
    assert torch.equal(z1, z2) and not torch.equal(z1, z3) and torch.equal(y1, images.labels[idx])
    assert torch.equal(a.get_batch(idx, sample=False)[0], a.mean[idx])
    # z = mean + std * eps: many draws have the posterior's mean and std
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([a.get_batch([1], generator=g)[0][0] for _ in range(400)])
    assert ((draws.mean(0) - a.mean[1]).abs() / a.std[1]).mean() < 0.1
    assert abs((draws.std(0) / a.std[1]).mean() - 1) < 0.05
    z, y = next(iter(torch.utils.data.DataLoader(a, batch_size=4)))
    assert z.shape == (4, 4, 32, 32) and y.dtype == torch.int64


def test_decode(vae, images, tmp_path):
    lat = encode_latents(images, vae, cache_dir=tmp_path, progress=False)
    x = decode_latents(lat.mean[:2], vae)
    assert x.shape == (2, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    with torch.no_grad():
        ref = vae.decode(lat.mean[:2] / 0.18215).sample.clamp(-1, 1)
    torch.testing.assert_close(x, ref)


def test_bad_inputs(vae, images, tmp_path):
    gray = ImageDataset(images.images[:, :1], images.labels, images.classes)
    with pytest.raises(ValueError, match="channels=3"):
        encode_latents(gray, vae, cache_dir=tmp_path)
    odd = ImageDataset(images.images[:, :, :63, :63], images.labels, images.classes)
    with pytest.raises(ValueError, match="divisible"):
        encode_latents(odd, vae, cache_dir=tmp_path)
    with pytest.raises(TypeError, match="ImageDataset"):
        encode_latents(torch.zeros(2, 3, 64, 64), vae, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        encode_latents(images, vae, batch_size=0, cache_dir=tmp_path)


def test_load_vae_offline_fails_fast():
    with pytest.raises(ConnectionError) as err:
        load_vae("stabilityai/sd-vae-ft-ema")
    assert "sd-vae-ft-ema" in str(err.value) and "local folder" in str(err.value)


def test_load_vae_from_local_folder(vae, tmp_path):
    vae.save_pretrained(tmp_path / "my-vae")
    loaded = load_vae(tmp_path / "my-vae")
    assert vae_fingerprint(loaded) == vae_fingerprint(vae) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        load_vae(tmp_path / "empty")
