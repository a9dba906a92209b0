"""Small KL autoencoders (diffusers' `AutoencoderKL`) as ditlab files, and which VAE a name means.

The DiT paper (§3.1) trains in the latent space of Stable Diffusion's VAE: 256x256x3 images -> 32x32x4 latents
(downsampling factor f = 8), multiplied by 0.18215 so that they have roughly unit variance. `ditlab vae`
(training/vae.py) trains a small one of the same kind on 32 px data (f = 4: 8x8x4 latents) in minutes on a CPU,
with the scale factor computed from its own latents (1 / their std, the recipe behind SD's 0.18215).

A ditlab VAE file is `<name>.safetensors` (the weights; the diffusers config, scale factor included, in the
metadata) with `<name>.json` beside it (how it was trained and how well it reconstructs: its card).
`resolve_vae(name)` turns what a user typed into what to load, trying in this order:
  1. a shipped name, e.g. "digits-vae" (`data/checkpoints/vae/`, or the folder $DITLAB_VAES names);
  2. a `ditlab vae` run folder (holding vae.safetensors), or a ditlab VAE .safetensors file;
  3. a diffusers AutoencoderKL folder (holding config.json), e.g. a downloaded `stabilityai/sd-vae-ft-ema`;
  4. a Hugging Face Hub id ("owner/name"), loaded by diffusers (online, or from the local HF cache).
"""
import difflib
import json
import math
import os
from pathlib import Path

import torch

from ..checks import of_type, one_of, refuse
from ..extras import requires
from ..io import atomic_write, load_tensors, save_tensors, shipped_path

FORMAT = "ditlab-vae"
RUN_FILE = "vae.safetensors"  # what a `ditlab vae` run folder holds (with vae.json and reconstructions.png)
FACTORS = (4, 8)  # downsampling factors: 32 px -> 8x8 (f = 4) or 4x4 (f = 8) latents
WIDTHS = {4: (16, 32, 32), 8: (16, 32, 32, 32)}  # channels per resolution level: len = log2(f) + 1
WHAT = "a shipped VAE name, a `ditlab vae` run folder or file, a diffusers AutoencoderKL folder, or a Hub id"


def vae_dir() -> Path:
    """`$DITLAB_VAES`, else the shipped `data/checkpoints/vae/`."""
    return Path(os.environ.get("DITLAB_VAES") or shipped_path("checkpoints", "vae"))


def shipped_vaes() -> list[str]:
    """Names of the shipped VAEs, e.g. ["digits-vae"]."""
    d = vae_dir()
    return sorted(p.stem for p in d.glob("*.safetensors")) if d.is_dir() else []


def small_vae_config(channels: int = 1, factor: int = 4, widths=None, latent_channels: int = 4,
                     image_size: int = 32) -> dict:
    """The diffusers AutoencoderKL config of a small KL autoencoder: `channels`-channel images, f = `factor`."""
    one_of("channels", channels, (1, 3))
    one_of("factor", factor, FACTORS)
    widths = tuple(widths or WIDTHS[factor])
    groups = max(1, math.gcd(*widths) // 4)  # GroupNorm: 4 channels per group on the narrowest level
    refuse("small_vae_config", [
        (len(widths) != int(math.log2(factor)) + 1, f"factor={factor} needs {int(math.log2(factor)) + 1} widths "
         f"(one per resolution level), got widths={widths}"),
        (not all(isinstance(w, int) and w >= 4 for w in widths), f"widths must be ints >= 4, got {widths}")])
    n = len(widths)
    return dict(in_channels=channels, out_channels=channels, down_block_types=["DownEncoderBlock2D"] * n,
                up_block_types=["UpDecoderBlock2D"] * n, block_out_channels=list(widths), layers_per_block=1,
                latent_channels=latent_channels, norm_num_groups=groups, sample_size=image_size,
                scaling_factor=1.0)  # replaced by 1 / std of the trained VAE's latents


def build_vae(config: dict, seed: int = 0):
    """A freshly initialised AutoencoderKL from a config dict (`small_vae_config`)."""
    with requires("hf"):
        from diffusers import AutoencoderKL  # heavy optional dependency (the [hf] extra)
    torch.manual_seed(seed)
    return AutoencoderKL.from_config(config)


def downsample_factor(vae) -> int:
    """Image side / latent side: 2 per resolution level after the first (8 for the SD VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def vae_config(vae) -> dict:
    """The VAE's diffusers config without diffusers' private entries (_class_name, _name_or_path, ...)."""
    return {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}


def save_vae(vae, path, card: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """`path` (.safetensors: weights, optionally cast, + config) and the card `path.json` beside it, atomically."""
    path = Path(path)
    refuse("save_vae", [(path.suffix != ".safetensors", f"path must end in .safetensors, got {str(path)!r}")])
    sd = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in vae.state_dict().items()}
    save_tensors(path, sd, {"format": FORMAT, "config": json.dumps(vae_config(vae))})
    if card is not None:
        text = json.dumps(card, indent=1)
        atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    return path


def read_vae_file(path, dtype: torch.dtype = torch.float32):
    """A ditlab VAE file -> AutoencoderKL (float32 by default) with `.card` (its json, or {})."""
    path = Path(path)
    tensors, meta = load_tensors(path)
    refuse(str(path), [(meta.get("format") != FORMAT, f"not a ditlab VAE file (metadata format "
                        f"{meta.get('format')!r}, expected {FORMAT!r}); write one with ditlab.data.save_vae")])
    vae = build_vae(json.loads(meta["config"]))
    vae.load_state_dict({k: v.to(dtype) for k, v in tensors.items()})
    card = path.with_suffix(".json")
    vae.card = json.loads(card.read_text()) if card.exists() else {}
    return vae if dtype == torch.float32 else vae.to(dtype=dtype)


def resolve_vae(name_or_path) -> tuple[str, str | Path]:
    """What `name_or_path` names -> ("ditlab", file) | ("diffusers", folder) | ("hub", id); see the module doc."""
    text = os.fspath(of_type("vae", name_or_path, (str, os.PathLike), WHAT))
    if text in shipped_vaes():
        return "ditlab", vae_dir() / f"{text}.safetensors"
    path = Path(text).expanduser()
    if path.is_dir() and (path / RUN_FILE).exists():
        return "ditlab", path / RUN_FILE
    if path.is_dir() and (path / "config.json").exists():
        return "diffusers", path
    if path.is_file() and path.suffix == ".safetensors":
        return "ditlab", path
    refuse(f"VAE {text!r}", [(path.exists(), f"{str(path)!r} is not a VAE: no {RUN_FILE} (a `ditlab vae` run "
                              "folder) and no config.json (a diffusers AutoencoderKL folder)")])
    if "/" not in text.strip("/") or path.suffix:
        guess = difflib.get_close_matches(text, shipped_vaes(), n=1)
        raise FileNotFoundError(f"unknown VAE {text!r}" + (f"; did you mean {guess[0]!r}?" if guess else "")
                                + f" Shipped: {', '.join(shipped_vaes()) or 'none'} (in {vae_dir()}); or {WHAT} "
                                "(`ditlab vae` trains one)")
    return "hub", text


def describe_vae(name_or_path) -> str:
    """What a run records as its VAE: a shipped name or Hub id as given, a local path made absolute."""
    kind, where = resolve_vae(name_or_path)
    text = os.fspath(name_or_path)
    return text if kind == "hub" or text in shipped_vaes() else str(Path(text).expanduser().resolve())
