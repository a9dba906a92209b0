"""Small DiTs trained with ditlab's own recipes, shipped in `data/checkpoints/` (see its README.md model card).

`load_pretrained("digits-p4")` returns the EMA model in eval mode, with `model.classes` and `model.card`
(the recipe, hardware, time and measured quality). Each checkpoint is an fp16 safetensors file with its
config in the metadata, plus a JSON card beside it.
"""
import json
import os
from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
DEFAULT = "digits-p4"


def checkpoint_dir() -> Path:
    """`$DITLAB_CHECKPOINTS`, else the repository's `data/checkpoints/`."""
    return Path(os.environ.get("DITLAB_CHECKPOINTS") or CHECKPOINT_DIR)


def list_pretrained() -> list[str]:
    """Names of the shipped checkpoints, e.g. ["digits-p2", "digits-p4", "digits-p8", "mnist-p4"]."""
    d = checkpoint_dir()
    return sorted(p.stem for p in d.glob("*.safetensors")) if d.exists() else []


def card(name: str) -> dict:
    """The model card of a shipped checkpoint: recipe (command), steps, hardware, time, params, Gflops, metrics."""
    path = checkpoint_dir() / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_pretrained(name: str = DEFAULT, device="cpu"):
    """A shipped checkpoint by name, as a float32 DiT in eval mode."""
    from .checkpoint import load_model

    names = list_pretrained()
    if name not in names:
        raise ValueError(f"unknown pretrained checkpoint {name!r}; shipped: {names or 'none found in ' + str(checkpoint_dir())}"
                         " (set $DITLAB_CHECKPOINTS to a folder of ditlab checkpoints, or use ditlab.load_model(path))")
    model = load_model(checkpoint_dir() / f"{name}.safetensors", device=device)
    model.card = card(name)
    return model
