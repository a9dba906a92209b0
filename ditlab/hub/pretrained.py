"""The released DiT-XL/2 checkpoints (paper §5), ImageNet class names, the paper's sampling settings and
the Stable Diffusion VAE that decodes DiT's latents.

    model = load_released("DiT-XL-2-256x256")          # downloads 2.7 GB once into ~/.cache/ditlab/pretrained
    vae = load_sd_vae("ema")                            # stabilityai/sd-vae-ft-ema from the Hugging Face Hub
    out = sample_imagenet(model, vae, ["golden retriever", "volcano"], purpose="picture", seed=0)
"""
import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from tqdm.auto import tqdm

from ..checkpoint import load_model, load_state_dict_checked, safe_torch_load
from ..data.imagenet import imagenet_labels
from ..data.latents import load_vae
from ..io import atomic_write, default_cache_dir
from ..model import DiT, DiTConfig, get_config
from ..sampling import Guidance, sample

BASE_URL = "https://dl.fbaipublicfiles.com/DiT/models/"
SD_VAES = {"ema": "stabilityai/sd-vae-ft-ema", "mse": "stabilityai/sd-vae-ft-mse"}


@dataclass(frozen=True)
class Release:
    url: str
    config: DiTConfig
    sha256: str | None = None  # checked after download when known
    size: int | None = None  # bytes; checked on every load when known (else the size recorded at download)


RELEASED = {  # DiT-XL/2 trained 7M steps on ImageNet (paper Table 2/3): latents 32x32 (256 px) or 64x64 (512 px)
    "DiT-XL-2-256x256": Release(BASE_URL + "DiT-XL-2-256x256.pt", get_config("DiT-XL/2", input_size=32)),
    "DiT-XL-2-512x512": Release(BASE_URL + "DiT-XL-2-512x512.pt", get_config("DiT-XL/2", input_size=64)),
}


# ---- released checkpoints ------------------------------------------------------------------------------
def release_cache_dir(cache_dir=None) -> Path:
    """`cache_dir` itself, else $DITLAB_CACHE/pretrained, else ~/.cache/ditlab/pretrained."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "pretrained"


def _release(name: str) -> Release:
    if name not in RELEASED:
        raise ValueError(f"unknown released checkpoint {name!r}; valid names: {list(RELEASED)} (or a file path)")
    return RELEASED[name]


def _offline_reason(url: str, timeout: float = 3.0) -> str | None:
    """None if `url` may be fetched now, else why not (offline mode, no connection). Fast: one TCP connect."""
    u = urlparse(url)
    if u.scheme not in ("http", "https"):
        return None
    for var in ("DITLAB_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").upper() in {"1", "ON", "YES", "TRUE"}:
            return f"offline mode is on ({var}=1)"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy: let the real request decide
    try:
        socket.create_connection((u.hostname, u.port or 443), timeout=timeout).close()
        return None
    except OSError as e:
        return f"cannot connect to {u.hostname} ({e})"


def _how_to_get(name: str, path: Path, reason: str) -> str:
    return (f"cannot download {name} ({reason}).\nDownload {RELEASED[name].url} on a machine with internet and "
            f"put it at {path} (or into <folder>/ and pass cache_dir='<folder>'), "
            f"or pass the file itself: load_released('/path/to/{path.name}').")


def _download(url: str, dest: Path, timeout: float = 10.0) -> dict:
    """Stream `url` into `dest` atomically (never a partial file at `dest`) -> dict(size, sha256).
    A short connect/read timeout and no retries: a dead network fails within seconds."""
    h = hashlib.sha256()
    size = 0

    def write(tmp):
        nonlocal size
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            small = total is None or total < 2**24
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=small) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        if total is not None and size != total:
            raise ConnectionError(f"download of {url} stopped after {size} of {total} bytes")

    atomic_write(dest, write)
    return dict(url=url, size=size, sha256=h.hexdigest())


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _size_ok(path: Path, rel: Release) -> bool:
    expected = rel.size
    if expected is None and _sidecar(path).exists():
        try:
            expected = json.loads(_sidecar(path).read_text()).get("size")
        except (OSError, ValueError):
            return False
    return expected is None or path.stat().st_size == expected


def download_released(name: str, cache_dir=None, force: bool = False) -> Path:
    """Path of the cached release `name`, downloading it when missing, incomplete (size) or `force`."""
    rel = _release(name)
    path = release_cache_dir(cache_dir) / f"{name}.pt"
    if path.exists() and not force and _size_ok(path, rel):
        return path
    reason = _offline_reason(rel.url)
    if reason is not None:
        state = "is incomplete or corrupt" if path.exists() else "is not cached"
        raise ConnectionError(f"{path} {state}; " + _how_to_get(name, path, reason))
    try:
        info = _download(rel.url, path)
    except (urllib.error.URLError, OSError) as e:  # includes timeouts and ConnectionError
        raise ConnectionError(_how_to_get(name, path, f"{type(e).__name__}: {e}")) from e
    if rel.sha256 is not None and info["sha256"] != rel.sha256:
        path.unlink()
        raise ValueError(f"{rel.url} has sha256 {info['sha256']}, expected {rel.sha256}; the file was removed")
    atomic_write(_sidecar(path), lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1)))
    return path


def load_released(name_or_path: str | os.PathLike, cache_dir=None, device="cpu") -> DiT:
    """A released DiT in eval mode: "DiT-XL-2-256x256" / "DiT-XL-2-512x512" (downloaded once into the
    cache; a partial or corrupt cached file is detected and fetched again) or a path to such a file
    (or to any checkpoint `ditlab.load_model` reads). Tensor shapes are checked against the config."""
    if isinstance(name_or_path, str) and name_or_path in RELEASED:
        rel = RELEASED[name_or_path]
        path = download_released(name_or_path, cache_dir)
        try:
            sd = safe_torch_load(path)
        except (RuntimeError, EOFError, OSError, ValueError) as e:  # truncated zip / pickle
            warnings.warn(f"{path} could not be read ({str(e).splitlines()[0][:120]}); downloading it again")
            path = download_released(name_or_path, cache_dir, force=True)
            sd = safe_torch_load(path)
        model = DiT(rel.config)
        load_state_dict_checked(model, sd)
        return model.to(device).eval()
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{str(name_or_path)!r} is neither a released checkpoint name {list(RELEASED)} "
                                "nor an existing file")
    rel = RELEASED.get(path.stem)
    return load_model(path, config=rel.config if rel else None, device=device)


# ---- paper settings, VAE, sampling ---------------------------------------------------------------------
def paper_settings(purpose: str = "picture") -> dict:
    """Sampling settings of the paper, as keyword arguments of `ditlab.sample`: 250 DDPM steps with the
    learned Σ (used automatically for learn_sigma models), classifier-free guidance on the first 3 latent
    channels as in the official code, scale 1.5 for FID-50K (Table 2, "-G") or 4.0 for pictures (Fig. 1)."""
    scales = {"fid": 1.5, "picture": 4.0}
    if purpose not in scales:
        raise ValueError(f"purpose must be one of {list(scales)}, got {purpose!r}")
    return dict(sampler="ddpm", steps=250, cfg_scale=scales[purpose], guidance_channels=3)


def load_sd_vae(kind: str = "ema", device="cpu", dtype=torch.float32):
    """The Stable Diffusion VAE (AutoencoderKL) DiT decodes with: "ema" (stabilityai/sd-vae-ft-ema, the
    official default), "mse" (stabilityai/sd-vae-ft-mse) or a local diffusers folder. Fails fast offline
    with what to download."""
    if not isinstance(kind, (str, os.PathLike)):
        raise TypeError(f"kind must be 'ema', 'mse' or a folder path, got {type(kind).__name__}")
    if kind in SD_VAES:
        try:
            return load_vae(SD_VAES[kind], device=device, dtype=dtype)
        except ConnectionError as e:
            repo = SD_VAES[kind]
            raise ConnectionError(f"{str(e).splitlines()[0]}\nOn a machine with "
                                  f"internet run `huggingface-cli download {repo} --local-dir {repo.split('/')[1]}` "
                                  f"(config.json + diffusion_pytorch_model.safetensors, 335 MB), copy the folder "
                                  f"here and pass it: load_sd_vae('{repo.split('/')[1]}')") from None
    if not Path(kind).expanduser().is_dir():
        raise ValueError(f"kind must be one of {list(SD_VAES)} or an existing diffusers VAE folder, got {str(kind)!r}")
    return load_vae(Path(kind).expanduser(), device=device, dtype=dtype)


def sample_imagenet(model, vae, class_names, *, purpose: str = "picture", seed: int = 0, device=None,
                    progress: bool = False, **overrides):
    """Sample one image per class name (see `imagenet_class_index`) with the paper's settings for `purpose`
    (overridable: steps=, sampler=, cfg_scale=, guidance_channels=); latents are decoded by `vae` as
    vae.decode(z / 0.18215). Returns `ditlab.sampling.Samples` (images (N, 3, 8h, 8w) in [-1, 1])."""
    if model.config.num_classes != 1000:
        raise ValueError("sample_imagenet needs a 1000-class ImageNet model, "
                         f"got num_classes={model.config.num_classes}")
    settings = {**paper_settings(purpose), **overrides}
    guidance = Guidance(settings.pop("cfg_scale"), settings.pop("guidance_channels", None))
    return sample(model, imagenet_labels(class_names), vae=vae, seed=seed, device=device, progress=progress,
                  cfg_scale=guidance, **settings)
