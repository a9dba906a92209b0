"""Which checkpoint: one answer for `ditlab sample --ckpt`, `load_model`, the notebooks and the playground.

`resolve_checkpoint(ckpt)` turns what a user typed into a file or a run folder, trying in this order:
  1. a shipped name, e.g. "digits-p4" (`data/checkpoints/`, or the folder $DITLAB_CHECKPOINTS names);
  2. a run folder written by `ditlab train`, e.g. "runs/demo";
  3. a checkpoint file: a ditlab .safetensors, an official .pt;
  4. a released name, e.g. "DiT-XL-2-256x256" (".pt" optional): its cached download, fetched once when online;
     offline, the error names the file to download and where it goes (see released.py).
Anything else is a FileNotFoundError listing the shipped names, the runs in the current folder and the closest match.
"""
import difflib
import os
from pathlib import Path

from ..checks import of_type
from ..io import shipped_path
from .released import RELEASED, download_released

RUN_FILES = ("checkpoint.safetensors", "ema.safetensors", "model.safetensors")
# where runs are looked for: the folder itself, two levels below it, and the studies' runs/<study>/<steps>/<run>
RUN_GLOBS = ("", "*/", "*/*/", "runs/*/*/", "runs/*/*/*/")
WHAT = "a shipped name, a run folder, a checkpoint file (.safetensors, .pt) or a released name"


CHECKPOINT_DIR = shipped_path("checkpoints")  # data/checkpoints/ of the repository, packed into the wheel


def checkpoint_dir() -> Path:
    """`$DITLAB_CHECKPOINTS`, else the shipped `data/checkpoints/` (in the checkout or the installed package)."""
    return Path(os.environ.get("DITLAB_CHECKPOINTS") or CHECKPOINT_DIR)


def shipped_names() -> list[str]:
    """Names of the shipped checkpoints, e.g. ["digits-flow-p2", "digits-p2", "digits-p4", "digits-p8", "mnist-p2"]."""
    d = checkpoint_dir()
    return sorted(p.stem for p in d.glob("*.safetensors")) if d.is_dir() else []


def local_runs(root: str | os.PathLike = ".") -> list[str]:
    """Run folders (holding a checkpoint, EMA or model file) in `root` and below, as paths relative to it."""
    root = Path(root)
    found = {p.parent for g in RUN_GLOBS for n in RUN_FILES for p in root.glob(g + n)}
    return sorted(str(p.relative_to(root)) for p in found
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))


def closest(text: str, candidates: list[str]) -> str | None:
    """The candidate most like `text` (difflib's ratio ≥ 0.6), else None."""
    match = difflib.get_close_matches(str(text), candidates, n=1, cutoff=0.6)
    return match[0] if match else None


def _listing(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f", … ({len(names)} in all)" if len(names) > limit else "") if names \
        else "none"


def not_shipped(name: str) -> str:
    """The message for a name that is not among the shipped checkpoints."""
    names, guess = shipped_names(), closest(name, shipped_names())
    return (f"unknown pretrained checkpoint {name!r}" + (f"; did you mean {guess!r}?" if guess else "")
            + f" Shipped: {_listing(names) if names else 'none, in ' + str(checkpoint_dir())} ($DITLAB_CHECKPOINTS "
            "names another folder; ditlab.load_model also takes run folders, files and released names)")


def not_found(text: str) -> str:
    """The message for a checkpoint that is none of the four kinds: what exists, and the closest match."""
    shipped, runs = shipped_names(), local_runs()
    guess = closest(text, shipped + runs + list(RELEASED))
    return (f"checkpoint not found: {text!r}." + (f" Did you mean {guess!r}?" if guess else "")
            + f"\n  shipped names: {_listing(shipped)}"
            + f"\n  runs in {os.getcwd()}: {_listing(runs)}"
            + f"\n  released names (downloaded once): {_listing(list(RELEASED))}"
            + "\n  or a checkpoint file (.safetensors, .pt); `ditlab list` shows them all")


def resolve_checkpoint(ckpt: str | os.PathLike) -> Path:
    """The file or run folder `ckpt` names (see the module docstring for the order); FileNotFoundError otherwise."""
    text = os.fspath(of_type("checkpoint", ckpt, (str, os.PathLike), WHAT))
    if text in shipped_names():
        return checkpoint_dir() / f"{text}.safetensors"
    path = Path(text).expanduser()
    if path.exists():
        return path
    if path.parent == Path(".") and path.name.removesuffix(".pt") in RELEASED:
        return download_released(path.name.removesuffix(".pt"))
    raise FileNotFoundError(not_found(text))
