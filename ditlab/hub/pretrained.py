"""The released DiT-XL/2 checkpoints (paper §5), ImageNet class names, the paper's sampling settings and
the Stable Diffusion VAE that decodes DiT's latents.

    model = load_released("DiT-XL-2-256x256")          # downloads 2.7 GB once into ~/.cache/ditlab/pretrained
    vae = load_sd_vae("ema")                            # stabilityai/sd-vae-ft-ema from the Hugging Face Hub
    out = sample_imagenet(model, vae, ["golden retriever", "volcano"], purpose="picture", seed=0)
"""
import os
import warnings
from pathlib import Path

import torch

from ..checkpoint import RELEASED, download_released, load_model, load_state_dict_checked, safe_torch_load
from ..checks import of_type, one_of, refuse
from ..data.imagenet import imagenet_labels
from ..data.latents import load_vae
from ..model import DiT
from ..sampling import Guidance, sample

SD_VAES = {"ema": "stabilityai/sd-vae-ft-ema", "mse": "stabilityai/sd-vae-ft-mse"}


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
    return load_model(Path(name_or_path).expanduser(), device=device)  # the config from RELEASED by file name


# ---- paper settings, VAE, sampling ---------------------------------------------------------------------
def paper_settings(purpose: str = "picture") -> dict:
    """Sampling settings of the paper, as keyword arguments of `ditlab.sample`: 250 DDPM steps with the
    learned Σ (used automatically for learn_sigma models), classifier-free guidance on the first 3 latent
    channels as in the official code, scale 1.5 for FID-50K (Table 2, "-G") or 4.0 for pictures (Fig. 1)."""
    scales = {"fid": 1.5, "picture": 4.0}
    one_of("purpose", purpose, scales)
    return dict(sampler="ddpm", steps=250, cfg_scale=scales[purpose], guidance_channels=3)


def load_sd_vae(kind: str = "ema", device="cpu", dtype=torch.float32):
    """The Stable Diffusion VAE (AutoencoderKL) DiT decodes with: "ema" (stabilityai/sd-vae-ft-ema, the
    official default), "mse" (stabilityai/sd-vae-ft-mse) or a local diffusers folder. Fails fast offline
    with what to download."""
    of_type("kind", kind, (str, os.PathLike), "'ema', 'mse' or a folder path")
    if kind in SD_VAES:
        try:
            return load_vae(SD_VAES[kind], device=device, dtype=dtype)
        except ConnectionError as e:
            repo = SD_VAES[kind]
            raise ConnectionError(f"{str(e).splitlines()[0]}\nOn a machine with "
                                  f"internet run `huggingface-cli download {repo} --local-dir {repo.split('/')[1]}` "
                                  f"(config.json + diffusion_pytorch_model.safetensors, 335 MB), copy the folder "
                                  f"here and pass it: load_sd_vae('{repo.split('/')[1]}')") from None
    refuse("", [(not Path(kind).expanduser().is_dir(),
                 f"kind must be one of {list(SD_VAES)} or an existing diffusers VAE folder, got {str(kind)!r}")])
    return load_vae(Path(kind).expanduser(), device=device, dtype=dtype)


def sample_imagenet(model, vae, class_names, *, purpose: str = "picture", seed: int = 0, device=None,
                    progress: bool = False, **overrides):
    """Sample one image per class name (see `imagenet_class_index`) with the paper's settings for `purpose`
    (overridable: steps=, sampler=, cfg_scale=, guidance_channels=); latents are decoded by `vae` as
    vae.decode(z / 0.18215). Returns `ditlab.sampling.Samples` (images (N, 3, 8h, 8w) in [-1, 1])."""
    refuse("sample_imagenet", [(model.config.num_classes != 1000,
                                f"needs a 1000-class ImageNet model, got num_classes={model.config.num_classes}")])
    settings = {**paper_settings(purpose), **overrides}
    guidance = Guidance(settings.pop("cfg_scale"), settings.pop("guidance_channels", None))
    return sample(model, imagenet_labels(class_names), vae=vae, seed=seed, device=device, progress=progress,
                  cfg_scale=guidance, **settings)
