"""Small DiTs trained with ditlab's own recipes, shipped in `data/checkpoints/` (see its README.md model card).

`load_pretrained("digits-p4")` returns the EMA model in eval mode, with `model.classes` and `model.card`
(the recipe, hardware, time and measured quality). Each checkpoint is an fp16 safetensors file with its
config in the metadata, plus a JSON card beside it.
"""
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from .training.vae import write_vae_card
from .checks import refuse
from .checkpoint import checkpoint_dir, load_model, not_shipped, save_model, shipped_names
from .data import load_dataset
from .eval import estimate_flops, estimate_params, evaluate, get_judge
from .sampling import objective_of, sample, samplers_for
from .training import read_log

DEFAULT = "digits-p4"


def list_pretrained() -> list[str]:
    """Names of the shipped checkpoints (`$DITLAB_CHECKPOINTS`, else data/checkpoints/), e.g. ["digits-p4", ...]."""
    return shipped_names()


def card(name: str) -> dict:
    """The model card of a shipped checkpoint: recipe (command), steps, hardware, time, params, Gflops, metrics."""
    path = checkpoint_dir() / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_pretrained(name: str = DEFAULT, device="cpu"):
    """A shipped checkpoint by name, as a float32 DiT in eval mode."""
    refuse("", [(name not in list_pretrained(), not_shipped(name))])
    model = load_model(checkpoint_dir() / f"{name}.safetensors", device=device)
    model.card = card(name)
    return model


# The sampling playground's default request (notebook 11): 16 images, 25 steps of the model's default sampler
# (DDIM, or Euler for flow-matching models), guidance on.
PLAYGROUND = dict(n=16, steps=25, cfg_scale=4.0)


def time_default_request(model, repeats: int = 3) -> float:
    """Best-of-`repeats` seconds for the playground's default request on this machine (CPU, current threads)."""
    labels = [i % model.config.num_classes for i in range(PLAYGROUND["n"])]
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        sample(model, labels, steps=PLAYGROUND["steps"], cfg_scale=PLAYGROUND["cfg_scale"], seed=r, progress=False)
        best = min(best, time.perf_counter() - t0)
    return best


def export_checkpoint(run_dir, name: str, command: str, out_dir=None, per_class: int = 50, hardware: str = "",
                      judge_kwargs=None) -> dict:
    """Run folder -> `<out_dir>/<name>.safetensors` (EMA weights, fp16) + `<name>.json` (the model card entry):
    the reproducing command, steps, time, params, Gflops, the objective, the judge's conditional accuracy and
    Fréchet distance (50 steps of the default sampler: DDIM, or Euler for flow matching; the documented CFG scale)
    and the playground request's time on this machine."""
    run_dir, out = Path(run_dir), Path(out_dir or checkpoint_dir())
    cfg = json.loads((run_dir / "config.json").read_text())
    train_cfg, mcfg = cfg["train"], cfg["model"]
    model = load_model(run_dir)
    save_model(model, out / f"{name}.safetensors", dtype=torch.float16, classes=cfg["classes"],
               objective=objective_of(model))
    model = load_model(out / f"{name}.safetensors")  # judge what is shipped: the fp16 weights
    size = mcfg["input_size"]
    judge = get_judge(train_cfg["data"], image_size=size, channels=mcfg["in_channels"], **(judge_kwargs or {}))
    real = load_dataset(train_cfg["data"], split="test", image_size=size, channels=mcfg["in_channels"])
    labels = [c for _ in range(per_class) for c in range(model.config.num_classes)]
    sampler = samplers_for(model)[0]
    s = sample(model, labels, steps=50, sampler=sampler, cfg_scale=PLAYGROUND["cfg_scale"], seed=0, progress=False)
    m = evaluate(judge, s.images, s.labels, real.get_batch(torch.arange(len(real)))[0])
    log = read_log(run_dir)
    steps = int(log[-1]["step"])
    # training time from the median throughput of the log's intervals: robust to a run paused in between
    img_s = statistics.median(r["img_per_s"] for r in log)
    entry = dict(name=name, command=command, data=train_cfg["data"], image_size=size, steps=steps,
                 batch_size=train_cfg["batch_size"], lr=train_cfg["lr"], model=train_cfg["model"], config=mcfg,
                 objective=objective_of(model),
                 params=estimate_params(model.config), gflops=estimate_flops(model.config) / 1e9,
                 train_minutes=round(steps * train_cfg["batch_size"] / img_s / 60, 1),
                 hardware=hardware or f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                 eval=dict(sampler=sampler, steps=50, cfg_scale=PLAYGROUND["cfg_scale"], n=len(labels),
                           accuracy=round(m["accuracy"], 4), fd=round(m["fd"], 3), judge_test_accuracy=judge.info.get("test_accuracy")),
                 playground_seconds=round(time_default_request(model), 3),
                 file_mb=round((out / f"{name}.safetensors").stat().st_size / 2**20, 2))
    (out / f"{name}.json").write_text(json.dumps(entry, indent=1))
    return entry


def write_model_card(out_dir=None) -> Path:
    """`data/checkpoints/README.md` from the JSON entries: one row per checkpoint plus its reproducing command."""
    out = Path(out_dir or checkpoint_dir())
    entries = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    lines = ["# Shipped checkpoints (model card)", "",
             "Small class-conditional DiTs (adaLN-Zero, label dropout 0.1) trained with `ditlab train`: with the "
             "paper's DDPM objective (ε-prediction + learned Σ), or with flow matching (SiT; rectified flow with "
             "velocity prediction) where the objective column says `flow`. "
             "EMA weights in fp16 safetensors with the config and the objective in the metadata; load with "
             "`ditlab.load_pretrained(name)`. Quality: 50 steps of the sampler column (DDIM, or the Euler ODE for "
             "flow models) at the CFG scale below, judged by a classifier "
             "trained on the real data of the dataset (`ditlab.eval.get_judge`): conditional accuracy (share of "
             "samples classified as the requested class) and Fréchet distance in the judge's 128-d features against "
             "the real test set. Playground time: the sampling playground's default request (16 images, 25 steps "
             "of that sampler, CFG on) on the machine named, best of 3. Train time: steps × batch ÷ the median "
             "images/s in the "
             "run's log.csv (robust to pauses). Images are the dataset resized to the px column. The FD is measured "
             "at that CFG scale, which trades diversity for fidelity; the digits models' unguided FDs are in "
             "`data/scaling.csv` (the DiT-Mi rows). Regenerate this file with "
             "`python -c \"import ditlab.zoo as z; z.write_model_card()\"`.", "",
             "| name | data | px | model | objective | params | Gflops | steps | train time | hardware | sampler | "
             "CFG | accuracy | FD | playground | size |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        ev, obj = e["eval"], e.get("objective", {"objective": "ddpm"})
        flow = f" ({obj['path']}, {obj['prediction']}, {obj['t_sampling']} t)" if "path" in obj else ""
        lines.append(f"| `{e['name']}` | {e['data']} | {e['image_size']} | {_model_name(e)} | "
                     f"{obj['objective']}{flow} | "
                     f"{e['params'] / 1e6:.2f} M | {e['gflops']:.3f} | {e['steps']} | {e['train_minutes']} min | "
                     f"{e['hardware']} | {ev['sampler']} | {ev['cfg_scale']} | "
                     f"{ev['accuracy']:.3f} | {ev['fd']:.2f} | {e['playground_seconds']:.2f} s | {e['file_mb']} MB |")
    lines += ["", "## How each was made", ""]
    for e in entries:
        lines += [f"`{e['name']}`:", "", "```bash", e["command"], "```", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    if out == Path(checkpoint_dir()):  # the shipped card also lists the shipped VAEs
        write_vae_card(path)
    return path


def _model_name(entry: dict) -> str:
    """The config name, plus the modern block's options where the model uses them."""
    c = entry["config"]
    extra = [f"{k}={c[k]}" for k, default in (("norm", "layernorm"), ("mlp", "gelu")) if c.get(k, default) != default]
    extra += [k for k in ("qk_norm", "rope") if c.get(k)]
    return entry["model"] + (f" ({', '.join(extra)})" if extra else "")
