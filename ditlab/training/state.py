"""The resumable state of a run in one safetensors file: weights, EMA, AdamW moments, grad scaler and RNG states,
the options and the data's content hash, written atomically; `load_state` restores all of it, so a resumed run
continues bit-identically (with the lr and weight decay of its own config: see resume.py)."""
import json
from dataclasses import asdict
from pathlib import Path

import torch
from ..checkpoint import TRAIN_FORMAT, load_state_dict_checked
from ..io import open_tensors, save_tensors
from ..model import DiTConfig


def save_state(path: Path, model, ema, opt, scaler, gen, step, cfg, mcfg, classes, data_fingerprint=None) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.model.state_dict().items()})
    opt_sd = opt.state_dict()
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


def load_state(path: Path, model, ema, opt, scaler, gen, mcfg) -> int:
    with open_tensors(path) as f:
        meta = f.metadata()
        stored = DiTConfig.from_dict(json.loads(meta["config"]))
        if stored != mcfg:
            diff = {k: (v, getattr(mcfg, k)) for k, v in stored.to_dict().items() if mcfg.to_dict()[k] != v}
            raise ValueError(f"cannot resume from {path}: it was trained with a different model config "
                             f"(checkpoint vs now: {diff}); use another out_dir or the same config")
        get = {k: f.get_tensor(k) for k in f.keys()}
    load_state_dict_checked(model, {k[6:]: v for k, v in get.items() if k.startswith("model.")})
    load_state_dict_checked(ema.model, {k[4:]: v for k, v in get.items() if k.startswith("ema.")})
    state = {}
    for k, v in get.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    groups = json.loads(meta["param_groups"])
    for g, own in zip(groups, opt.state_dict()["param_groups"]):
        g["params"] = own["params"]
        g["lr"], g["weight_decay"] = own["lr"], own["weight_decay"]  # this run's config wins (reported by resume.py)
    opt.load_state_dict({"state": state, "param_groups": groups})
    if json.loads(meta["scaler"]) and scaler.is_enabled():  # a resume may change the precision
        scaler.load_state_dict(json.loads(meta["scaler"]))
    gen.set_state(get["rng.generator"])
    torch.set_rng_state(get["rng.torch"])
    return int(meta["step"])


RECORDED_LATER = dict(objective="ddpm", warmup_steps=0)  # what checkpoints from before these options trained with


def stored_train_config(path: Path) -> dict:
    """The TrainConfig (as a dict) of the run whose checkpoint is at `path`."""
    with open_tensors(path) as f:
        return {**RECORDED_LATER, **json.loads((f.metadata() or {})["train_config"])}
