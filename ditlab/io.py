"""Files, folders and devices every layer uses: atomic writes, tensor files, output paths checked before work,
the cache folder, the committed reference files, image grids, the device to run on, and whether the Hugging Face Hub
can be reached. Nothing here knows about DiT."""
import math
import os
import socket
import tempfile
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import torch
from einops import rearrange
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .extras import requires


# ---- writing files safely -------------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call `write(tmp_path)` then rename onto `path`, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp (and safetensors) create 0600 files; make it an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_tensors(path, tensors: dict, metadata: dict | None = None) -> Path:
    """Atomically write a .safetensors file (CPU, contiguous tensors; metadata values must be str)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def open_tensors(path):
    """`safe_open` a .safetensors file (use as `with open_tensors(p) as f:`); a truncated, corrupt or
    foreign file is a ValueError naming it instead of the reader's header error."""
    try:
        return safe_open(str(path), framework="pt")
    except SafetensorError as e:
        raise ValueError(f"{path} is not a readable .safetensors file ({e}): it is truncated, corrupt or in "
                         "another format; re-create or re-download it") from None


def load_tensors(path) -> tuple[dict, dict]:
    """Read a .safetensors file -> (dict of tensors, metadata dict)."""
    with open_tensors(path) as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, what: str) -> None:
    base = _nearest_existing(path.absolute().parent)
    if not base.is_dir():
        raise NotADirectoryError(f"{what} {str(path)!r}: {str(base)!r} is a file, not a folder; choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {str(path)!r}: no permission to write in {str(base)!r}; choose another path")


def check_output_file(path, what: str = "output file") -> Path:
    """Refuse an output file that is a folder or cannot be created — before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a folder; give a file name, e.g. {str(path / 'samples.png')!r}")
    _check_creatable(path, what)
    return path


def check_output_dir(path, what: str = "output folder") -> Path:
    """Refuse an output folder that is a file or cannot be created — before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {str(path)!r} is a file; give a folder (a new or empty one)")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {str(path)!r}: no permission to write in it; choose another folder")
    _check_creatable(path, what)
    return path


def default_cache_dir(cache_dir=None) -> Path:
    """`cache_dir`, else $DITLAB_CACHE, else ~/.cache/ditlab."""
    return Path(cache_dir or os.environ.get("DITLAB_CACHE") or Path.home() / ".cache" / "ditlab").expanduser()


def shipped_path(*parts: str) -> Path:
    """A file or folder of the repository's `data/` (shipped checkpoints, their model card, study results), e.g.
    `shipped_path("scaling.csv")`: inside the package (`ditlab/_data/`, put there when a wheel is built, see
    setup.py) after `pip install`, else in the checkout beside the package (editable install)."""
    packed = resources.files("ditlab") / "_data"
    root = Path(str(packed)) if packed.is_dir() else Path(__file__).resolve().parents[1] / "data"
    return root.joinpath(*parts)


FIXTURES_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def fixture_path(name: str) -> Path:
    """A file of the reference data committed beside the tests, e.g. "official_dit/DiT-tiny-release.pt" (the
    official DiT code's tiny weights and outputs; tests/fixtures/README.md). Looked up in $DITLAB_FIXTURES, then
    the repository's tests/fixtures/. Raises FileNotFoundError saying how to get it (an installed package
    without the repository, e.g. on Colab, has no fixtures)."""
    roots = [Path(os.environ["DITLAB_FIXTURES"]).expanduser()] if os.environ.get("DITLAB_FIXTURES") else []
    for root in [*roots, FIXTURES_DIR]:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"reference file {name!r} is neither in $DITLAB_FIXTURES nor in the repository's "
                            "tests/fixtures/. It ships with the ditlab "
                            "repository, not with the installed package: clone the repository and install it with "
                            "`pip install -e .`, or set $DITLAB_FIXTURES to a folder holding tests/fixtures/'s files")


# ---- images ---------------------------------------------------------------------------------------------
def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.float() / 127.5 - 1.0


def float_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped)."""
    return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> uint8 (H', W', C) image grid, `nrow` images per row."""
    if nrow is not None and (not isinstance(nrow, int) or isinstance(nrow, bool) or nrow < 1):
        raise ValueError(f"nrow must be None or a positive int, got {nrow!r}")
    n = images.shape[0]
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    x = float_to_uint8(images.detach().cpu())
    x = torch.cat([x, torch.zeros(rows * nrow - n, *x.shape[1:], dtype=torch.uint8)])
    x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    return rearrange(x, "(r k) c h w -> (r h) (k w) c", k=nrow)


def save_grid(images: torch.Tensor, path, nrow: int | None = None) -> Path:
    """Write an image grid PNG atomically."""
    grid = make_grid(images, nrow).numpy()
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


# ---- devices -------------------------------------------------------------------------------------------
def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" (this process's GPU under torchrun, else the GPU, else the CPU), "cpu", "cuda", "cuda:N" or "mps"
    -> torch.device; a malformed name or a device this machine lacks is a ValueError saying what exists."""
    if isinstance(name, str) and name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a device name; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"device {name!r}: CUDA is not available here (torch {torch.__version__}, no usable GPU); "
                             "use 'cpu' or 'auto'")
        if device.index is not None and device.index >= n:
            raise ValueError(f"device {name!r}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: MPS (Apple GPU) is not available here; use 'cpu' or 'auto'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device


# ---- the network ----------------------------------------------------------------------------------------
def hub_reachable(timeout: float = 3.0) -> str | None:
    """None if the Hugging Face Hub may be reached, else a short reason (offline mode or no connection)."""
    with requires("hf"):
        from huggingface_hub import constants  # heavy optional dependency (the [hf] extra)

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_DATASETS_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}:
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy: let the real request decide
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return None
    except OSError as e:
        return f"cannot connect to {host} ({e})"
