"""What `resume=True` may change. A resumed run continues the checkpoint's model, data and random streams
exactly, so options that would change those are refused; every other changed option takes its new value from
the checkpoint's step on and is reported (printed, and recorded under "resumes" in config.json):

    refused   the model: model, model_args, learn_sigma, class_dropout_prob
              the objective: objective, path, prediction, loss_weight, t_sampling
              the data: data, image_size, channels, limit, vae, and the data's content (a hash)
              the order of data and noise: batch_size, seed
    applied   lr and weight_decay (set in the restored optimizer), warmup_steps, steps (not below the
              checkpoint's), recipe, ema_decay, ema_warmup, grad_clip, precision, device, compile,
              grad_checkpointing, log_every, ckpt_every, sample_every, sample_steps, sample_cfg
    ignored   out_dir, resume, overwrite, progress, verdict

Options left unset (None) keep the run's values (recipes.keep_resumed), so `--resume --steps N` changes only steps.
"""
import json
from dataclasses import asdict
from pathlib import Path

from ..io import open_tensors
from .config import RECIPE_FIELDS, TrainConfig
from .state import RECORDED_LATER

FIXED = ("model", "model_args", "learn_sigma", "class_dropout_prob", "objective", "path", "prediction", "loss_weight",
         "t_sampling", "data", "image_size", "channels", "limit", "vae", "batch_size", "seed")
IGNORED = ("out_dir", "resume", "overwrite", "progress", "verdict")


def plan_resume(ckpt: Path, cfg: TrainConfig) -> tuple[dict, dict]:
    """(checkpoint metadata, {option: (checkpoint's value, new value)} for each change the resumed run applies);
    a refused change, or steps below the checkpoint's step, raises ValueError — before any data is loaded.
    Options still left to the recipe (None in RECIPE_FIELDS) are not compared: call again once it has filled them."""
    with open_tensors(ckpt) as f:
        meta = f.metadata() or {}
    defaults = json.loads(json.dumps(asdict(TrainConfig())))  # options an older checkpoint did not record yet
    old = {**defaults, **RECORDED_LATER, **json.loads(meta["train_config"])}
    new = json.loads(json.dumps(asdict(cfg)))  # as stored: tuples become lists
    changed = {k: (old.get(k), v) for k, v in new.items()
               if k not in IGNORED and old.get(k) != v and not (v is None and k in RECIPE_FIELDS)}
    refused = {k: change for k, change in changed.items() if k in FIXED}
    if refused:
        raise ValueError(f"cannot resume {ckpt}: {describe(refused)} would change the run's model, data or the order "
                         f"of its data and noise. Resume with the checkpoint's values, or start a new run "
                         f"(a new --out-dir, or --overwrite to replace this one)")
    step = int(meta["step"])
    if cfg.steps is not None and cfg.steps < step:
        raise ValueError(f"cannot resume {ckpt} with steps={cfg.steps}: its checkpoint is at step {step}; "
                         f"pass steps >= {step}")
    return meta, changed


def check_data(meta: dict, ckpt: Path, fingerprint: str | None) -> None:
    """Refuse to resume on data whose content differs from the checkpoint's (same name, other images)."""
    stored = json.loads(meta.get("data_fingerprint", "null"))
    if stored is not None and fingerprint is not None and stored != fingerprint:
        raise ValueError(f"cannot resume {ckpt}: the training data changed (content hash {stored[:12]} then, "
                         f"{fingerprint[:12]} now); resume with the same data, or start a new run")


def describe(changes: dict) -> str:
    """{"lr": (1e-4, 1e-5)} -> "lr 0.0001 -> 1e-05"."""
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
