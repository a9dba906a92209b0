"""Latent mode (DiT paper, Sec. 3.1 "Latent diffusion models"): train on VAE latents instead of pixels.

A 256x256x3 image becomes a 32x32x4 latent with the Stable Diffusion VAE (downsampling factor 8),
scaled by 0.18215 so the latents have roughly unit variance; the small VAEs of `ditlab vae` (autoencoder.py) turn
32 px images into 8x8x4 latents, scaled by the factor measured on their own latents (in their config). Encoding
is the slow part, so it is done once and cached on disk (safetensors), keyed by the dataset's content and the
VAE's weights.

We store the posterior's mean and std, not one sample: the official DiT draws
`vae.encode(x).latent_dist.sample() * 0.18215` at every training step, and
`mean + std * randn` (done per batch in `LatentDataset.get_batch`) gives exactly that without re-encoding.
"""
import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..extras import requires
from ..io import default_cache_dir, hub_reachable, load_tensors, save_tensors, uint8_to_float
from .autoencoder import describe_vae, downsample_factor, read_vae_file, resolve_vae, shipped_vaes
from .datasets import content_hash

DEFAULT_VAE = "stabilityai/sd-vae-ft-ema"
SD_SCALE_FACTOR = 0.18215  # Stable Diffusion VAE latent scale (Rombach et al. 2022), used by DiT
VERSION = 1


class LatentDataset(Dataset):
    """Scaled VAE posteriors: mean, std (N, 4, h, w) and labels (N,). Items are fresh samples (or the mean).

    `vae` (set by encode_latents) is the autoencoder that made them: `decode(z)` turns latents back into pixels,
    e.g. for the verdict's judge and the sample grids."""

    def __init__(self, mean, std, labels, classes, scale_factor=SD_SCALE_FACTOR, name="", sample=True, vae=None):
        if mean.shape != std.shape or mean.ndim != 4 or len(labels) != len(mean):
            raise ValueError(f"mean/std must be (N, C, h, w) with N labels, got {tuple(mean.shape)}, "
                             f"{tuple(std.shape)}, {tuple(labels.shape)}")
        self.mean, self.std, self.labels = mean, std, labels.long()
        self.classes, self.scale_factor, self.name, self.sample = list(classes), scale_factor, name, sample
        self.vae = vae

    def decode(self, z):
        """Scaled latents (B, C, h, w) -> images (B, c, f h, f w) in [-1, 1], decoded by the dataset's VAE."""
        if self.vae is None:
            raise ValueError("this LatentDataset has no VAE to decode with (pass vae= or use encode_latents)")
        return decode_latents(z, self.vae, self.scale_factor).cpu()

    @property
    def pixel_size(self):
        """Side of the images the latents decode to (int, or (H, W))."""
        f = downsample_factor(self.vae) if self.vae is not None else 1
        h, w = (s * f for s in self.mean.shape[-2:])
        return h if h == w else (h, w)

    @property
    def pixel_channels(self):
        return self.vae.config.out_channels if self.vae is not None else self.channels

    def __len__(self):
        return len(self.mean)

    def __getitem__(self, i):
        z = self.mean[i] + self.std[i] * torch.randn_like(self.std[i]) if self.sample else self.mean[i]
        return z, self.labels[i]

    def get_batch(self, idx, device=None, generator=None, sample=None):
        """idx (B,) -> (latents (B, C, h, w), labels (B,)); a fresh posterior sample unless sample=False."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        z = self.mean[idx]
        if self.sample if sample is None else sample:
            z = z + self.std[idx] * torch.randn(z.shape, generator=generator, dtype=z.dtype)
        return z.to(device), self.labels[idx].to(device)

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def fingerprint(self):
        """Content hash of the posteriors, labels and classes (a resumed run checks it is training on the same)."""
        return content_hash((self.mean, self.std, self.labels), self.classes)

    @property
    def channels(self):
        return self.mean.shape[1]

    @property
    def image_size(self):
        h, w = self.mean.shape[-2:]
        return h if h == w else (h, w)

    def __repr__(self):
        return (f"LatentDataset(name={self.name!r}, n={len(self)}, channels={self.channels}, "
                f"image_size={self.image_size}, scale_factor={self.scale_factor})")


def load_vae(name_or_path=DEFAULT_VAE, device="cpu", dtype=torch.float32):
    """A diffusers AutoencoderKL in eval mode with gradients off: a shipped name ("digits-vae"), a `ditlab vae`
    run folder or file, a local diffusers folder or a Hub id (autoencoder.resolve_vae says which).

    Fails fast (no retries) when the Hub cannot be reached and the model is not in the local HF cache.
    """
    with requires("hf"):
        from diffusers import AutoencoderKL  # heavy optional dependency (the [hf] extra)

    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path must be a str or path, got {type(name_or_path).__name__}")
    kind, where = resolve_vae(name_or_path)
    if kind == "ditlab":
        vae = read_vae_file(where, dtype)
    elif kind == "diffusers":
        vae = AutoencoderKL.from_pretrained(str(where), torch_dtype=dtype)
    else:
        reason = hub_reachable()
        try:  # offline: only the local HF cache is tried, which fails at once when the model is missing
            vae = AutoencoderKL.from_pretrained(where, torch_dtype=dtype, local_files_only=reason is not None)
        except (OSError, ValueError, RuntimeError) as e:
            raise ConnectionError(
                f"Could not load the VAE {where!r} ({reason or type(e).__name__ + ': ' + str(e)[:200]}; no local "
                f"folder of that name either).\nDownload it on a machine with internet, e.g. `huggingface-cli "
                f"download {DEFAULT_VAE} --local-dir sd-vae-ft-ema` (or stabilityai/sd-vae-ft-mse), then pass the "
                f"local folder: load_vae('sd-vae-ft-ema'); or use a shipped VAE ({', '.join(shipped_vaes())}) "
                f"or train one with `ditlab vae`.") from e
    vae.name_or_path = describe_vae(name_or_path)
    return vae.to(device).eval().requires_grad_(False)


def vae_fingerprint(vae):
    """Hash of a VAE's config and weights (identifies the cache of latents it produced)."""
    h = hashlib.blake2b(digest_size=16)
    config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}  # skip _name_or_path etc.
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for k, v in vae.state_dict().items():
        h.update(f"{k}{tuple(v.shape)}{v.dtype}".encode())
        h.update(memoryview(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


@torch.no_grad()
def encode_latents(dataset, vae, batch_size=32, cache_dir=None, device=None, scale_factor=None, progress=True):
    """Encode an ImageDataset with `vae` -> LatentDataset (mean, std scaled by scale_factor), cached on disk.

    scale_factor defaults to vae.config.scaling_factor (0.18215 for the SD VAEs). device defaults to the
    VAE's device (the VAE is moved if a device is given).
    """
    for attr in ("images", "labels", "classes", "fingerprint"):
        if not hasattr(dataset, attr):
            raise TypeError(f"dataset must be a ditlab ImageDataset, got {type(dataset).__name__}")
    if not hasattr(vae, "encode") or not hasattr(vae, "config"):
        raise TypeError(f"vae must be a diffusers AutoencoderKL, got {type(vae).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if dataset.channels != vae.config.in_channels:
        raise ValueError(f"the VAE takes {vae.config.in_channels}-channel images but the dataset has "
                         f"{dataset.channels}; load it with channels={vae.config.in_channels}")
    trained = getattr(vae, "card", {}).get("image_size")  # ditlab VAEs know the image size they were trained at
    if trained is not None and dataset.image_size != trained:
        raise ValueError(f"the VAE was trained on {trained} px images but the dataset's are {dataset.image_size} px; "
                         f"load it with image_size={trained} (`--image-size {trained}`)")
    f = downsample_factor(vae)
    if any(s % f for s in dataset.images.shape[-2:]):
        raise ValueError(f"image size {tuple(dataset.images.shape[-2:])} must be divisible by the VAE's "
                         f"downsampling factor {f}; load the dataset with image_size=256 (or another multiple)")
    if scale_factor is None:
        scale_factor = float(getattr(vae.config, "scaling_factor", None) or SD_SCALE_FACTOR)

    key = hashlib.sha1(f"{dataset.fingerprint}|{vae_fingerprint(vae)}|{scale_factor}|v{VERSION}".encode())
    cache = default_cache_dir(cache_dir) / "latents" / f"{dataset.name or 'data'}-{key.hexdigest()[:20]}.safetensors"
    if cache.exists():
        t, meta = load_tensors(cache)
        return LatentDataset(t["mean"], t["std"], t["labels"], json.loads(meta["classes"]),
                             float(meta["scale_factor"]), name=dataset.name, vae=vae)

    if device is not None:
        vae.to(device)
    device = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    means, stds = [], []
    for images in tqdm(dataset.images.split(batch_size), desc="encoding latents", disable=not progress):
        x = uint8_to_float(images).to(device, dtype)  # (B, 3, H, W) in [-1, 1]
        post = vae.encode(x).latent_dist  # diagonal Gaussian q(z | x), (B, 4, H/8, W/8)
        means.append((post.mean * scale_factor).float().cpu())
        stds.append((post.std * scale_factor).float().cpu())
    c = vae.config.latent_channels
    mean = torch.cat(means) if means else torch.zeros(0, c, *(s // f for s in dataset.images.shape[-2:]))
    std = torch.cat(stds) if stds else torch.zeros_like(mean)
    save_tensors(cache, {"mean": mean, "std": std, "labels": dataset.labels},
                 {"classes": json.dumps(dataset.classes), "scale_factor": repr(scale_factor), "name": dataset.name})
    return LatentDataset(mean, std, dataset.labels.clone(), dataset.classes, scale_factor, name=dataset.name,
                         vae=vae)


@torch.no_grad()
def decode_latents(z, vae, scale_factor=None):
    """Scaled latents (B, 4, h, w) -> images (B, c, f h, f w) as float in [-1, 1] (clamped); f = 8 for SD's VAE."""
    if scale_factor is None:
        scale_factor = float(getattr(vae.config, "scaling_factor", None) or SD_SCALE_FACTOR)
    p = next(vae.parameters())
    return vae.decode(z.to(p.device, p.dtype) / scale_factor).sample.float().clamp(-1, 1)
