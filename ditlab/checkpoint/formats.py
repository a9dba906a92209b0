"""Saving and loading DiT weights safely: ditlab files, the official release and the official train format.

Formats understood by `load_model(ckpt)` (which first asks `resolve_checkpoint` what `ckpt` names: a shipped name, a
run folder, a file or a released name):
- ditlab model file: `*.safetensors` whose metadata holds the config (written by `save_model`);
- ditlab training run folder (written by `ditlab.train`): loads its EMA weights, those of `checkpoint.safetensors`
  unless `ema.safetensors` holds the same step (a run killed between the two writes leaves it behind);
- official release, e.g. `DiT-XL-2-256x256.pt`: a plain state dict;
- official `train.py` checkpoint, e.g. `0400000.pt`: {"model", "ema", "opt", "args"}; loads "ema".
Pickles are only ever read with `torch.load(weights_only=True)`: no code inside a file is executed. A file
without a config is inferred from its shapes only where that is unambiguous; otherwise pass `config=`.
"""
import argparse
import json
import math
import os
import pickle
import pickletools
from pathlib import Path

import torch
from ..checks import of_type, one_of, refuse
from ..io import open_tensors, resolve_device, save_tensors
from ..model import SIZES, DiT, DiTConfig, get_config
from .released import RELEASED
from .resolve import resolve_checkpoint


TRAIN_FORMAT = "ditlab-train"  # a run's checkpoint.safetensors (training/resume.py): model.*, ema.*, opt.*, rng.*
OBJECTIVES = ("ddpm", "flow")  # what `read_objective` may find: the paper's DDPM, or flow matching (SiT)


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
        refuse(f"refusing to load {path}", [("Unsupported global" in str(e) or _is_pickle(path),
                "it contains pickled objects other than tensors and plain containers, which could run arbitrary "
                f"code. Only weights are loaded (torch.load weights_only=True). Details: {_unpickler_error(e)}")])
        raise _unreadable(path, e) from None
    except (FileNotFoundError, PermissionError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - torch's readers fail in many ways on truncated or random bytes
        raise _unreadable(path, e) from None


def _is_pickle(path) -> bool:
    """Whether the file parses as a pickle (opcodes only, nothing is run): refused content, not random bytes."""
    try:
        with open(path, "rb") as f:
            for _ in pickletools.genops(f):
                pass
    except Exception:  # noqa: BLE001 - any parse failure means "not a pickle"
        return False
    return True


def _unpickler_error(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return next((line for line in lines if "Unpickler error" in line), lines[0] if lines else type(e).__name__)


def _unreadable(path, e: Exception) -> ValueError:
    return ValueError(f"cannot read {path}: it is not a PyTorch checkpoint, or it is truncated or corrupt "
                      f"({type(e).__name__}: {_unpickler_error(e)[:200]}); re-download or re-create it")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict | None, list | None]:
    """(state_dict, config dict or None, class names or None) from any supported format; no model is built."""
    path = Path(path)
    if path.is_dir():
        return _read_run(path)
    if path.suffix == ".safetensors":
        with open_tensors(path) as f:
            meta = f.metadata() or {}
            refuse("", [(meta.get("format") == TRAIN_FORMAT, f"{path} is a training checkpoint (weights, EMA and "
                         "optimizer state, for resuming); to load its EMA weights pass the run folder "
                         f"{str(path.parent)!r} or {str(path.with_name('ema.safetensors'))!r}")])
            sd = {k: f.get_tensor(k) for k in f.keys()}
        config = _field(meta, "config", path) if "config" in meta else _config_json_beside(path)
        return sd, config, _field(meta, "classes", path)
    obj = safe_torch_load(path)
    refuse("", [(not isinstance(obj, dict), f"{path} does not hold a state dict or an official DiT training "
                                            "checkpoint")])
    if "ema" in obj and "args" in obj:  # official train.py format
        return obj["ema"], _config_json_beside(path) or _config_from_args(obj["args"]), None
    if "model" in obj and isinstance(obj["model"], dict) and not torch.is_tensor(obj["model"]):
        return obj["model"], obj.get("config") or _config_json_beside(path), None
    return obj, _config_json_beside(path), None


def _read_run(run: Path) -> tuple[dict, dict, list | None]:
    """A training run folder -> its EMA weights. checkpoint.safetensors is written first and is what a resume
    continues from; ema.safetensors, written after it, is used only when it holds the same step."""
    ckpt, ema = run / "checkpoint.safetensors", run / "ema.safetensors"
    if ckpt.exists():
        with open_tensors(ckpt) as f:
            meta = f.metadata() or {}
            if not (ema.exists() and _metadata(ema).get("step") == meta.get("step")):
                sd = {k.removeprefix("ema."): f.get_tensor(k) for k in f.keys() if k.startswith("ema.")}
                return sd, _field(meta, "config", ckpt), _field(meta, "classes", ckpt)
    for name in ("ema.safetensors", "model.safetensors"):
        if (run / name).exists():
            return read_checkpoint(run / name)
    raise FileNotFoundError(f"{run} is a folder without checkpoint.safetensors, ema.safetensors or model.safetensors")


def _field(meta: dict, name: str, path: Path):
    """The JSON value of metadata field `name` (None when absent); invalid JSON is refused naming file and field."""
    try:
        return json.loads(meta[name]) if name in meta else None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: metadata field {name!r} is not valid JSON ({e}): {meta[name][:80]!r}; "
                         "re-create the file with ditlab.save_model") from None


def _metadata(path: Path) -> dict:
    with open_tensors(path) as f:
        return f.metadata() or {}


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
    # R label rows are R classes (trained without label dropout) or R - 1 classes + the null class of guidance:
    # only the released ImageNet DiTs (1000 classes + null) are known; anything else would be a guess
    refuse("cannot infer a DiT config from the shapes", [
        (heads is None or side * side != T, f"no num_heads/input_size for depth={depth}, hidden={D}, tokens={T}; "
         "pass config= (a DiTConfig, a dict or a config.json path)"),
        (rows != 1001, f"the label table has {rows} rows, which is {rows} classes (trained with "
         f"class_dropout_prob=0) or {rows - 1} classes + the null class. Pass config= (a DiTConfig, a dict or a "
         "config.json path) with num_classes and class_dropout_prob")])
    return DiTConfig(input_size=side * p, patch_size=p, in_channels=C, hidden_size=D, depth=depth,
                     num_heads=heads, num_classes=1000, class_dropout_prob=0.1, learn_sigma=out == 2 * C)


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
    refuse("checkpoint does not match the config " + json.dumps(model.config.to_dict()), [
        (problems, "\n  shape mismatch " + "\n  shape mismatch ".join(problems)),
        (missing, f"\n  missing tensors: {missing}"), (extra, f"\n  unexpected tensors: {extra}")])
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})


def load_model(ckpt: str | os.PathLike, config=None, device: str | torch.device = "cpu") -> DiT:
    """A DiT in eval mode from a shipped name, a run folder, a checkpoint file or a released name
    (`resolve_checkpoint`); the config comes from `config`, the file's metadata, a `config.json` beside it, the
    official train args, the released weights' table (by file name), or the tensor shapes, in that order. Weights
    with NaN or inf are refused.
    `model.classes` holds the stored class names (or None), `model.objective` what it was trained for
    (`read_objective`) and `model.vae` the VAE whose latents it models (`read_vae`; None: a pixel model)."""
    device = resolve_device(device)
    path = resolve_checkpoint(ckpt)
    sd, stored, classes = read_checkpoint(path)
    objective = read_objective(path)
    broken = [k for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point() and not v.isfinite().all()]
    refuse(str(path), [(broken, f"{len(broken)} weight tensors hold NaN or inf (e.g. {broken[:3]}): the run "
                                "diverged and would sample blank images; use an earlier checkpoint, or retrain with "
                                "a lower --lr")])
    cfg = _as_config(config) if config is not None else DiTConfig.from_dict(stored) if stored is not None else \
        RELEASED[path.stem].config if path.stem in RELEASED else infer_config(sd)
    model = DiT(cfg)
    load_state_dict_checked(model, sd)
    model.classes, model.objective, model.vae = classes, objective, read_vae(path)
    return model.to(device).eval()


def read_objective(path: str | os.PathLike) -> dict:
    """What a checkpoint was trained for: the record ditlab writes into its files' metadata, e.g.
    {"objective": "flow", "path": "linear", "prediction": "velocity", ...}; {"objective": "ddpm"} (the paper's) for
    official files and older ditlab ones. A run folder: its EMA file, else its training checkpoint."""
    path = Path(path)
    files = [path / n for n in ("ema.safetensors", "checkpoint.safetensors", "model.safetensors")] \
        if path.is_dir() else [path]
    for f in files:
        if f.suffix == ".safetensors" and f.exists():
            record = _field(_metadata(f), "objective", f)
            if record is not None:
                of_type(f"{f}: metadata field 'objective'", record, dict, 'a JSON object like {"objective": "flow"}')
                one_of(f"{f}: metadata field 'objective'", record.get("objective"), OBJECTIVES)
                return record
    return {"objective": "ddpm"}


def read_vae(path: str | os.PathLike) -> str | None:
    """The VAE a latent model was trained on (what `ditlab.data.load_vae` takes: a shipped name, an absolute path
    or a Hub id), from a ditlab file's metadata or a run folder's; None for pixel models and official files."""
    path = Path(path)
    if path.is_dir():
        metas = [(f, _metadata(f)) for f in (path / "ema.safetensors", path / "checkpoint.safetensors") if f.exists()]
        found = [m.get("vae") or (_field(m, "train_config", f) or {}).get("vae") for f, m in metas]
        return next((v for v in found if v), None)
    return _metadata(path).get("vae") if path.suffix == ".safetensors" and path.exists() else None
