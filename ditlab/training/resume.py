"""Resuming a run, in one place: the resumable state of a run in one safetensors file (weights, EMA, AdamW moments,
grad scaler and RNG states, the options and the data's content hash, written atomically), what a resumed run keeps,
and what it may change. `load_state` restores all of it, so a resumed run continues bit-identically.

A resumed run continues the checkpoint's model, data and random streams exactly, so options that would change those
are refused; every other changed option takes its new value from the checkpoint's step on and is reported (printed,
and recorded under "resumes" in config.json):

    refused   the model: model, model_args, learn_sigma, class_dropout_prob
              the objective: objective, path, prediction, loss_weight, t_sampling
              the data: data, image_size, channels, limit, vae, and the data's content (a hash)
              the order of data and noise: batch_size, seed
    applied   lr and weight_decay (set in the restored optimizer), warmup_steps, lr_schedule, steps (not below the
              checkpoint's), recipe, ema_decay, ema_warmup, grad_clip, precision, device, compile,
              grad_checkpointing, log_every, ckpt_every, sample_every, sample_steps, sample_cfg
    ignored   out_dir, resume, overwrite, progress, verdict

Options left unset (None) keep the run's values (`keep_resumed`), so `--resume --steps N` changes only steps.
"""
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..checkpoint import TRAIN_FORMAT, load_state_dict_checked
from ..checks import integer, one_of
from ..io import open_tensors, save_tensors
from ..model import DiTConfig
from .advice import opt
from .config import OBJECTIVES, RECIPE_FIELDS, TrainConfig

FIXED = ("model", "model_args", "learn_sigma", "class_dropout_prob", "objective", "path", "prediction", "loss_weight",
         "t_sampling", "data", "image_size", "channels", "limit", "vae", "batch_size", "seed")
IGNORED = ("out_dir", "resume", "overwrite", "progress", "verdict")
RECORDED_LATER = dict(objective="ddpm", warmup_steps=0)  # what checkpoints from before these options trained with
JSON_FIELDS = ("train_config", "config", "classes", "objective", "param_groups", "scaler")


def save_state(path: Path, model, ema, opt_, scaler, gen, step, cfg, mcfg, classes, data_fingerprint=None) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.model.state_dict().items()})
    opt_sd = opt_.state_dict()
    for i, st in opt_sd["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    tensors["rng.generator"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = dict(format=TRAIN_FORMAT, step=str(step), config=json.dumps(mcfg.to_dict()),
                train_config=json.dumps(asdict(cfg)), classes=json.dumps(classes),
                objective=json.dumps(getattr(ema.model, "objective", {"objective": "ddpm"})),
                data_fingerprint=json.dumps(data_fingerprint),
                param_groups=json.dumps([{k: v for k, v in g.items() if k != "params"} for g in opt_sd["param_groups"]]),
                scaler=json.dumps(scaler.state_dict() if scaler.is_enabled() else {}))
    save_tensors(path, tensors, meta)


def read_meta(path: Path) -> dict:
    """A training checkpoint's metadata, parsed: {"step": int, "train": the options (dict), field: value, ...}; a file
    without training metadata, a field that is not JSON or names an unknown objective is refused naming both."""
    with open_tensors(path) as f:
        raw = f.metadata() or {}
    try:
        meta = {k: json.loads(raw.get(k, "null")) for k in (*JSON_FIELDS, "data_fingerprint")}
        meta["step"] = integer(f"{path}: metadata field 'step'", int(raw["step"]), min=0)
    except json.JSONDecodeError as e:
        bad = next(k for k in JSON_FIELDS if not _is_json(raw.get(k, "null")))
        raise ValueError(f"cannot resume from {path}: its metadata field {bad!r} is not valid JSON ({e}); the file is "
                         f"damaged: start a new run ({opt('overwrite')}) or restore the file") from None
    except KeyError:
        raise ValueError(f"cannot resume from {path}: it has no training metadata (fields 'step' and 'train_config'; "
                         f"format={raw.get('format')!r}, not {TRAIN_FORMAT!r}): it holds weights only, not a run's "
                         f"training state. Start a new run ({opt('overwrite')} replaces this folder's run)") from None
    meta["train"] = {**RECORDED_LATER, **(meta["train_config"] or _missing(path, "train_config"))}
    one_of(f"{path}: metadata field 'train_config' objective", meta["train"]["objective"], OBJECTIVES)
    one_of(f"{path}: metadata field 'objective'", (meta["objective"] or {"objective": "ddpm"}).get("objective"),
           OBJECTIVES)
    return meta


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _missing(path: Path, field: str):
    raise ValueError(f"cannot resume from {path}: its metadata field {field!r} is empty (null); the file is not a "
                     f"complete training checkpoint: start a new run ({opt('overwrite')})")


def keep_resumed(cfg: TrainConfig, stored: dict) -> tuple[TrainConfig, tuple]:
    """A resumed run keeps its recipe and the values of the options not given again -> (config, names kept).
    An explicit `recipe` on resume gives the unset lr, warm-up, EMA decay and steps that recipe's values instead;
    model, objective and batch size stay the run's either way (they fix the model and the order of the data)."""
    fixed = ("model", "objective", "batch_size") if cfg.recipe != "auto" else RECIPE_FIELDS
    kept = {k: stored[k] for k in fixed if getattr(cfg, k) is None and k in stored}
    if cfg.recipe == "auto" and "recipe" in stored:
        kept["recipe"] = stored["recipe"]
    return replace(cfg, **kept), tuple(kept)


def plan_resume(meta: dict, ckpt: Path, cfg: TrainConfig) -> dict:
    """{option: (checkpoint's value, new value)} for each change the resumed run applies; a refused change, or steps
    below the checkpoint's step, raises ValueError — before any data is loaded. Options still left to the recipe
    (None in RECIPE_FIELDS) are not compared: call again once it has filled them."""
    defaults = json.loads(json.dumps(asdict(TrainConfig())))  # options an older checkpoint did not record yet
    old = {**defaults, **meta["train"]}
    new = json.loads(json.dumps(asdict(cfg)))  # as stored: tuples become lists
    changed = {k: (old.get(k), v) for k, v in new.items()
               if k not in IGNORED and old.get(k) != v and not (v is None and k in RECIPE_FIELDS)}
    refused = {k: change for k, change in changed.items() if k in FIXED}
    if refused:
        raise ValueError(f"cannot resume {ckpt}: {describe(refused)} would change the run's model, data or the order "
                         f"of its data and noise. Resume with the checkpoint's values, or start a new run "
                         f"(a new {opt('out_dir', 'DIR')}, or {opt('overwrite')} to replace this one)")
    if cfg.steps is not None and cfg.steps < meta["step"]:
        raise ValueError(f"cannot resume {ckpt} with {opt('steps', cfg.steps)}: its checkpoint is at step {meta['step']}; "
                         f"pass {opt('steps', meta['step'])} or more")
    return changed


def check_data(meta: dict, ckpt: Path, fingerprint: str | None) -> None:
    """Refuse to resume on data whose content differs from the checkpoint's (same name, other images)."""
    stored = meta["data_fingerprint"]
    if stored is not None and fingerprint is not None and stored != fingerprint:
        raise ValueError(f"cannot resume {ckpt}: the training data changed (content hash {stored[:12]} then, "
                         f"{fingerprint[:12]} now); resume with the same data, or start a new run")


def load_state(path: Path, meta: dict, model, ema, opt_, scaler, gen, mcfg) -> int:
    """Restore everything `save_state` wrote into the freshly built objects -> the checkpoint's step."""
    stored = DiTConfig.from_dict(meta["config"])
    if stored != mcfg:
        diff = {k: (v, getattr(mcfg, k)) for k, v in stored.to_dict().items() if mcfg.to_dict()[k] != v}
        raise ValueError(f"cannot resume from {path}: it was trained with a different model config "
                         f"(checkpoint vs now: {diff}); use another out_dir or the same config")
    with open_tensors(path) as f:
        get = {k: f.get_tensor(k) for k in f.keys()}
    load_state_dict_checked(model, {k[6:]: v for k, v in get.items() if k.startswith("model.")})
    load_state_dict_checked(ema.model, {k[4:]: v for k, v in get.items() if k.startswith("ema.")})
    state = {}
    for k, v in get.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    groups = meta["param_groups"]
    for g, own in zip(groups, opt_.state_dict()["param_groups"]):
        g["params"] = own["params"]
        g["lr"], g["weight_decay"] = own["lr"], own["weight_decay"]  # this run's config wins (reported on resume)
    opt_.load_state_dict({"state": state, "param_groups": groups})
    if meta["scaler"] and scaler.is_enabled():  # a resume may change the precision
        scaler.load_state_dict(meta["scaler"])
    gen.set_state(get["rng.generator"])
    torch.set_rng_state(get["rng.torch"])
    return meta["step"]


def describe(changes: dict) -> str:
    """{"lr": (1e-4, 1e-5)} -> "lr 0.0001 -> 1e-05"."""
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
