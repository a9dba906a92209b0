"""Saving and loading DiT weights safely: ditlab files, the official release and the official train format.

Formats understood by `load_model(path)`:
- ditlab model file: `*.safetensors` whose metadata holds the config (written by `save_model`);
- ditlab training run/checkpoint folder (written by `ditlab.train`): loads its EMA weights;
- official release, e.g. `DiT-XL-2-256x256.pt`: a plain state dict;
- official `train.py` checkpoint, e.g. `0400000.pt`: {"model", "ema", "opt", "args"}; loads "ema".
Pickles are only ever read with `torch.load(weights_only=True)`: no code inside a file is executed.
"""
import argparse
import json
import math
import os
import pickle
from pathlib import Path

import torch
from safetensors import safe_open

from .io import save_tensors
from .model import SIZES, DiT, DiTConfig, get_config


def save_model(model: DiT, path: str | os.PathLike, dtype: torch.dtype | None = None, **metadata) -> Path:
    """Weights (optionally cast, e.g. fp16) + config in one safetensors file, written atomically."""
    sd = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in model.state_dict().items()}
    meta = {"format": "ditlab", "config": json.dumps(model.config.to_dict()),
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}}
    return save_tensors(path, sd, meta)


def safe_torch_load(path: str | os.PathLike) -> object:
    """`torch.load(weights_only=True)`, allowing only `argparse.Namespace` (the official train args)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"refusing to load {path}: it contains pickled objects other than tensors and plain "
                         f"containers, which could run arbitrary code. Only weights are loaded "
                         f"(torch.load weights_only=True). Details: {str(e).splitlines()[0]}") from None


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict | None]:
    """(state_dict, config dict or None) from any supported format; no model is built."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():  # a ditlab training run: prefer the EMA weights
        for name in ("ema.safetensors", "model.safetensors"):
            if (path / name).exists():
                return read_checkpoint(path / name)
        raise FileNotFoundError(f"{path} is a folder without ema.safetensors or model.safetensors")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
        return sd, (json.loads(meta["config"]) if "config" in meta else _config_json_beside(path))
    obj = safe_torch_load(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict or an official DiT training checkpoint")
    if "ema" in obj and "args" in obj:  # official train.py format
        return obj["ema"], _config_json_beside(path) or _config_from_args(obj["args"])
    if "model" in obj and isinstance(obj["model"], dict) and not torch.is_tensor(obj["model"]):
        return obj["model"], obj.get("config") or _config_json_beside(path)
    return obj, _config_json_beside(path)


def _config_json_beside(path: Path) -> dict | None:
    p = path.with_name("config.json")
    return json.loads(p.read_text()) if p.exists() else None


def _config_from_args(args) -> dict | None:
    """Official train.py args: model name and pixel image size (latents are 8x smaller)."""
    try:
        cfg = get_config(args.model, input_size=args.image_size // 8, num_classes=args.num_classes)
    except (ValueError, AttributeError):
        return None
    return cfg.to_dict()


def infer_config(sd: dict) -> DiTConfig:
    """Guess an adaLN-Zero config from tensor shapes (num_heads from the paper's sizes)."""
    try:
        D, C, p, _ = sd["x_embedder.proj.weight"].shape
        depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        rows = sd["y_embedder.embedding_table.weight"].shape[0]
        out = sd["final_layer.linear.weight"].shape[0] // (p * p)
        T = sd["pos_embed"].shape[1]
    except KeyError as e:
        raise ValueError(f"cannot infer a DiT config: state dict lacks {e}; pass config=") from None
    heads = {(d, h): n for d, h, n in SIZES.values()}.get((depth, D))
    side = math.isqrt(T)
    if heads is None or side * side != T:
        raise ValueError(f"cannot infer num_heads/input_size for depth={depth}, hidden={D}, tokens={T}; "
                         "pass config= (a DiTConfig, a dict or a config.json path)")
    return DiTConfig(input_size=side * p, patch_size=p, in_channels=C, hidden_size=D, depth=depth,
                     num_heads=heads, num_classes=rows - 1, learn_sigma=out == 2 * C)


def _as_config(config) -> DiTConfig:
    if isinstance(config, DiTConfig):
        return config
    if isinstance(config, (str, os.PathLike)) and str(config).endswith(".json"):
        config = json.loads(Path(config).read_text())
    if isinstance(config, str):
        return get_config(config)
    if isinstance(config, dict):
        return DiTConfig.from_dict(config)
    raise TypeError(f"config must be a DiTConfig, dict, config name or .json path, got {type(config).__name__}")


def load_state_dict_checked(model: DiT, sd: dict) -> None:
    """`load_state_dict(strict=True)` with one clear error listing every missing, extra or mis-shaped tensor."""
    own = model.state_dict()
    sd = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in sd.items()}
    problems = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                for k, v in sd.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if problems or missing or extra:
        raise ValueError("checkpoint does not match the config " + json.dumps(model.config.to_dict())
                         + "".join(f"\n  shape mismatch {p}" for p in problems)
                         + (f"\n  missing tensors: {missing}" if missing else "")
                         + (f"\n  unexpected tensors: {extra}" if extra else ""))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})


def load_model(path: str | os.PathLike, config=None, device: str | torch.device = "cpu") -> DiT:
    """A DiT in eval mode from any supported checkpoint; the config comes from `config`, the file's metadata,
    a `config.json` beside it, the official train args, or the tensor shapes, in that order.
    `model.classes` holds the stored class names (or None) and `model.objective` what it was trained for:
    {"objective": "ddpm"} (the paper's, and every non-ditlab file) or {"objective": "flow", "path": ..., ...}."""
    sd, stored = read_checkpoint(path)
    if config is not None:
        cfg = _as_config(config)
    elif stored is not None:
        cfg = DiTConfig.from_dict(stored)
    else:
        cfg = infer_config(sd)
    model = DiT(cfg)
    load_state_dict_checked(model, sd)
    meta = read_metadata(path)
    model.classes = json.loads(meta["classes"]) if "classes" in meta else None
    model.objective = json.loads(meta["objective"]) if "objective" in meta else {"objective": "ddpm"}
    return model.to(device).eval()


def read_metadata(path: str | os.PathLike) -> dict:
    """The string metadata of a ditlab safetensors file (or of a run folder's EMA file); {} for other formats."""
    path = Path(path)
    if path.is_dir():
        path = next((path / n for n in ("ema.safetensors", "model.safetensors") if (path / n).exists()), path)
    if path.suffix != ".safetensors":
        return {}
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}
