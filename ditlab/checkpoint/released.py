"""The released DiT-XL/2 checkpoints (paper §5, trained 7M steps on ImageNet): where they come from, their configs,
and the download into the cache (once, atomically, size and checksum checked). Offline, the error says what to
download and where to put it. `ditlab.hub.load_released` and the checkpoint resolver (`resolve.py`) use it."""
import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tqdm.auto import tqdm

from ..checks import one_of, refuse
from ..io import atomic_write, default_cache_dir
from ..model import DiTConfig, get_config

BASE_URL = "https://dl.fbaipublicfiles.com/DiT/models/"


@dataclass(frozen=True)
class Release:
    url: str
    config: DiTConfig
    sha256: str | None = None  # checked after download when known
    size: int | None = None  # bytes; checked on every load when known (else the size recorded at download)


RELEASED = {  # DiT-XL/2 trained 7M steps on ImageNet (paper Table 2/3): latents 32x32 (256 px) or 64x64 (512 px)
    "DiT-XL-2-256x256": Release(BASE_URL + "DiT-XL-2-256x256.pt", get_config("DiT-XL/2", input_size=32)),
    "DiT-XL-2-512x512": Release(BASE_URL + "DiT-XL-2-512x512.pt", get_config("DiT-XL/2", input_size=64)),
}


# ---- released checkpoints ------------------------------------------------------------------------------
def release_cache_dir(cache_dir=None) -> Path:
    """`cache_dir` itself, else $DITLAB_CACHE/pretrained, else ~/.cache/ditlab/pretrained."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "pretrained"


def _release(name: str) -> Release:
    return RELEASED[one_of("name", name, RELEASED, " (a released checkpoint name; or pass a file path)")]


def _offline_reason(url: str, timeout: float = 3.0) -> str | None:
    """None if `url` may be fetched now, else why not (offline mode, no connection). Fast: one TCP connect."""
    u = urlparse(url)
    if u.scheme not in ("http", "https"):
        return None
    for var in ("DITLAB_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").upper() in {"1", "ON", "YES", "TRUE"}:
            return f"offline mode is on ({var}=1)"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy: let the real request decide
    try:
        socket.create_connection((u.hostname, u.port or 443), timeout=timeout).close()
        return None
    except OSError as e:
        return f"cannot connect to {u.hostname} ({e})"


def _how_to_get(name: str, path: Path, reason: str) -> str:
    return (f"cannot download {name} ({reason}).\nDownload {RELEASED[name].url} on a machine with internet and "
            f"put it at {path} (or into <folder>/ and pass cache_dir='<folder>' to ditlab.load_released), "
            f"or pass the file itself: load_released('/path/to/{path.name}') or load_model('/path/to/{path.name}').")


def _download(url: str, dest: Path, timeout: float = 10.0) -> dict:
    """Stream `url` into `dest` atomically (never a partial file at `dest`) -> dict(size, sha256).
    A short connect/read timeout and no retries: a dead network fails within seconds."""
    h = hashlib.sha256()
    size = 0

    def write(tmp):
        nonlocal size
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            small = total is None or total < 2**24
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=small) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        refuse(f"download of {url}", [(total is not None and size != total,
                                        f"stopped after {size} of {total} bytes")], ConnectionError)

    atomic_write(dest, write)
    return dict(url=url, size=size, sha256=h.hexdigest())


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _size_ok(path: Path, rel: Release) -> bool:
    expected = rel.size
    if expected is None and _sidecar(path).exists():
        try:
            expected = json.loads(_sidecar(path).read_text()).get("size")
        except (OSError, ValueError):
            return False
    return expected is None or path.stat().st_size == expected


def download_released(name: str, cache_dir=None, force: bool = False) -> Path:
    """Path of the cached release `name`, downloading it when missing, incomplete (size) or `force`."""
    rel = _release(name)
    path = release_cache_dir(cache_dir) / f"{name}.pt"
    if path.exists() and not force and _size_ok(path, rel):
        return path
    reason = _offline_reason(rel.url)
    if reason is not None:
        state = "is incomplete or corrupt" if path.exists() else "is not cached"
        raise ConnectionError(f"{path} {state}; " + _how_to_get(name, path, reason))
    try:
        info = _download(rel.url, path)
    except (urllib.error.URLError, OSError) as e:  # includes timeouts and ConnectionError
        raise ConnectionError(_how_to_get(name, path, f"{type(e).__name__}: {e}")) from e
    if rel.sha256 is not None and info["sha256"] != rel.sha256:
        path.unlink()
        raise ValueError(f"{rel.url} has sha256 {info['sha256']}, expected {rel.sha256}; the file was removed")
    atomic_write(_sidecar(path), lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1)))
    return path
