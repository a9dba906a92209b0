"""Writing files safely: atomic writes, .safetensors tensor files, output paths checked before any work."""
import os
import tempfile
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..checks import refuse


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
    where = f"{what} {str(path)!r}"
    refuse(where, [(not base.is_dir(), f"{str(base)!r} is a file, not a folder; choose another path")],
           NotADirectoryError)
    refuse(where, [(not os.access(base, os.W_OK | os.X_OK), f"no permission to write in {str(base)!r}; choose "
                                                           "another path")], PermissionError)


def check_output_file(path, what: str = "output file") -> Path:
    """Refuse an output file that is a folder or cannot be created — before any work is done."""
    path = Path(path)
    refuse("", [(path.is_dir(), f"{what} {str(path)!r} is a folder; give a file name, e.g. "
                                f"{str(path / 'samples.png')!r}")], IsADirectoryError)
    _check_creatable(path, what)
    return path


def check_output_dir(path, what: str = "output folder") -> Path:
    """Refuse an output folder that is a file or cannot be created — before any work is done."""
    path = Path(path)
    where = f"{what} {str(path)!r}"
    refuse("", [(path.exists() and not path.is_dir(), f"{where} is a file; give a folder (a new or empty one)")],
           NotADirectoryError)
    refuse(where, [(path.is_dir() and not os.access(path, os.W_OK | os.X_OK),
                    "no permission to write in it; choose another folder")], PermissionError)
    _check_creatable(path, what)
    return path
