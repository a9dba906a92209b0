"""Image datasets: built-in generated ones, Hugging Face ones, and local .npz / .zip / folder files.

Everything is held in memory as one uint8 tensor (N, C, H, W) plus int64 labels (N,): small datasets
train fastest on a CPU from in-memory batches. `ds[i]` gives (x, y) with x float32 in [-1, 1].
Slow things (generating, decoding JPEGs, Hub downloads) are done once and cached as .safetensors in
`cache_dir`, `$DITLAB_CACHE` or `~/.cache/ditlab`.
"""
import hashlib
import io
import json
import os
import socket
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from . import builtin_data

HF_DATASETS = {"mnist": "ylecun/mnist", "fashion_mnist": "zalando-datasets/fashion_mnist", "cifar10": "uoft-cs/cifar10"}
DATASET_NAMES = ["digits", "shapes", *HF_DATASETS]
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_DIRS = {"train", "test", "val", "valid", "validation"}
OFFLINE_HELP = (
    "Alternatives that work offline:\n"
    "  * a local .npz with x_train/y_train (and x_test/y_test) arrays, e.g. load_dataset('../shared/data/mnist.npz')\n"
    "  * a .zip or folder of class-named image folders (<split>/<class>/*.png|jpg),"
    " e.g. load_dataset('../shared/data/cifar10.zip')\n"
    "  * a built-in generated dataset: load_dataset('digits') or load_dataset('shapes')")


class ImageDataset(Dataset):
    """Images as uint8 (N, C, H, W), labels as int64 (N,); items are (float32 (C, H, W) in [-1, 1], label)."""

    def __init__(self, images, labels, classes, name=""):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
        self.images, self.labels = images.contiguous(), labels.long()
        self.classes, self.name = list(classes), name
        self._fingerprint = None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return uint8_to_float(self.images[i]), self.labels[i]

    def get_batch(self, idx, device=None):
        """Fast batched access: idx (B,) -> (float32 (B, C, H, W) in [-1, 1], int64 (B,))."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return uint8_to_float(self.images[idx]).to(device), self.labels[idx].to(device)

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def channels(self):
        return self.images.shape[1]

    @property
    def image_size(self):
        h, w = self.images.shape[-2:]
        return h if h == w else (h, w)

    @property
    def fingerprint(self):
        """Content hash of images + labels + classes (used to key caches derived from this data)."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            for t in (self.images, self.labels):
                h.update(str(tuple(t.shape)).encode())
                h.update(memoryview(t.numpy()).cast("B"))
            h.update(json.dumps(self.classes).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def __repr__(self):
        return (f"ImageDataset(name={self.name!r}, n={len(self)}, channels={self.channels}, "
                f"image_size={self.image_size}, num_classes={self.num_classes})")


def uint8_to_float(x):
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.float() / 127.5 - 1.0


def float_to_uint8(x):
    """float [-1, 1] -> uint8 [0, 255] (clamped)."""
    return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def default_cache_dir(cache_dir=None):
    """`cache_dir`, else $DITLAB_CACHE, else ~/.cache/ditlab."""
    return Path(cache_dir or os.environ.get("DITLAB_CACHE") or Path.home() / ".cache" / "ditlab").expanduser()


def save_tensors(path, tensors, metadata=None):
    """Atomically write a .safetensors file (temp file + os.replace)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors writes 0600; make it a normal file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_tensors(path):
    """Read a .safetensors file -> (dict of tensors, metadata dict)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


def _save_arrays(path, images, labels, classes):
    save_tensors(path, {"images": images, "labels": labels}, {"classes": json.dumps(list(classes))})


def _load_arrays(path):
    t, meta = load_tensors(path)
    return t["images"], t["labels"], json.loads(meta["classes"])


def hub_reachable(timeout=3.0):
    """None if the Hugging Face Hub may be reached, else a short reason (offline mode or no connection)."""
    from huggingface_hub import constants

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


def _subset(n, limit, seed):
    """Indices of `limit` items after a seeded shuffle (all items, in order, when limit is None)."""
    if limit is None or limit >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]


def _to_nchw(x, where):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3, 4)):
        raise ValueError(f"{where}: images must be (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.size and x.min() >= 0 and x.max() <= 1:
            x = x * 255.0
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"{where}: images must be uint8 (or floats in [0, 1]), got {x.dtype}")
        x = np.round(x).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(x))


def _load_npz(path, split):
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {str(path)!r} as .npz: {e}") from e
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{str(path)!r} holds a single array; expected a .npz with x_train/y_train arrays")
    with f:
        xk, yk = f"x_{split}", f"y_{split}"
        if xk not in f or yk not in f:
            raise ValueError(f"{path}: split={split!r} needs arrays {xk!r} and {yk!r}; the file has {sorted(f.keys())}")
        images, labels = _to_nchw(f[xk], str(path)), torch.from_numpy(np.asarray(f[yk]).astype(np.int64).ravel())
        classes = [str(c) for c in f["classes"]] if "classes" in f else None
    if classes is None:
        classes = [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    return images, labels, classes


def _list_images(path):
    """Relative posix paths of the image files inside a .zip or folder."""
    if path.is_dir():
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    else:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    return sorted(n for n in names if PurePosixPath(n).suffix.lower() in IMAGE_EXTS
                  and not any(p.startswith((".", "__MACOSX")) for p in PurePosixPath(n).parts))


def _image_files(path, split):
    """-> (list of (member, label), class names) for `<split>/<class>/*` or `<class>/*` layouts."""
    parts = [PurePosixPath(n).parts for n in _list_images(path)]
    if not parts:
        raise ValueError(f"{path}: no image files ({', '.join(sorted(IMAGE_EXTS))}) found")
    skip = 0  # strip wrapper folders that every file shares (e.g. cifar10/train/cat/1.png)
    while (all(len(p) > skip + 2 for p in parts) and len({p[skip] for p in parts}) == 1
           and parts[0][skip].lower() not in SPLIT_DIRS):
        skip += 1
    depths = {len(p) - skip for p in parts}
    if depths == {3}:  # <split>/<class>/<file>
        splits = sorted({p[skip] for p in parts})
        if split not in splits:
            raise ValueError(f"{path}: split={split!r} not found; available splits: {splits}")
        classes = sorted({p[skip + 1] for p in parts})  # union over splits keeps labels consistent
        files = [p for p in parts if p[skip] == split]
    elif depths == {2}:  # <class>/<file>
        if split != "train":
            raise ValueError(f"{path}: has no split folders, so only split='train' exists (got {split!r})")
        classes = sorted({p[skip] for p in parts})
        files = parts
    else:
        raise ValueError(f"{path}: expected <split>/<class>/<image> or <class>/<image>, found mixed depths")
    index = {c: i for i, c in enumerate(classes)}
    return [("/".join(p), index[p[-2]]) for p in files], classes


def _decode_all(path, members, image_size):
    """Decode images with PIL -> (uint8 (N, C, H, W), resized?). Mixed sizes are centre-cropped and resized."""
    from PIL import Image
    from tqdm.auto import tqdm

    zf = None if path.is_dir() else zipfile.ZipFile(path)
    out, mode = [], None
    try:
        for m in tqdm(members, desc=f"decoding {path.name}", disable=len(members) < 2000, leave=False):
            data = (path / m).read_bytes() if zf is None else zf.read(m)
            im = Image.open(io.BytesIO(data))
            mode = mode or ("L" if im.mode in ("1", "L", "LA", "I", "I;16") else "RGB")
            out.append(im.convert(mode))
    finally:
        if zf is not None:
            zf.close()
    resized = len({im.size for im in out}) > 1
    if resized:
        if image_size is None:
            raise ValueError(f"{path}: images have different sizes; pass image_size= to crop and resize them")
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        out = [_crop_resize(im, w, h) for im in out]
    arr = np.stack([np.asarray(im) for im in out]) if out else np.zeros((0, 1, 1), np.uint8)
    return _to_nchw(arr, str(path)), resized


def _crop_resize(im, w, h):
    """Centre-crop a PIL image to aspect w:h, then resize to (w, h)."""
    from PIL import Image

    W, H = im.size
    cw, ch = min(W, round(H * w / h)), min(H, round(W * h / w))
    left, top = (W - cw) // 2, (H - ch) // 2
    return im.crop((left, top, left + cw, top + ch)).resize((w, h), Image.LANCZOS)


def _load_image_files(path, split, limit, seed, image_size, cache_dir):
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{split}|{limit}|{seed}".encode()).hexdigest()
    cache = default_cache_dir(cache_dir) / "files" / f"{path.stem}-{split}-{key[:16]}"
    sized = cache.with_name(f"{cache.name}-{image_size}.safetensors")
    for c in (cache.with_suffix(".safetensors"), sized):
        if c.exists():
            return _load_arrays(c)
    files, classes = _image_files(path, split)
    idx = _subset(len(files), limit, seed)
    if idx is not None:
        files = [files[i] for i in idx.tolist()]
    images, resized = _decode_all(path, [m for m, _ in files], image_size)
    labels = torch.tensor([y for _, y in files], dtype=torch.int64)
    _save_arrays(sized if resized else cache.with_suffix(".safetensors"), images, labels, classes)
    return images, labels, classes


def _load_builtin(name, split, limit, seed, image_size, cache_dir):
    n = builtin_data.DEFAULT_SIZES.get(split)
    if n is None:
        raise ValueError(f"split must be one of {list(builtin_data.DEFAULT_SIZES)} for {name!r}, got {split!r}")
    size = image_size if isinstance(image_size, int) else builtin_data.DEFAULT_IMAGE_SIZE
    classes = builtin_data.BUILTINS[name][1]
    cache = (default_cache_dir(cache_dir) / "builtin"
             / f"{builtin_data.recipe_id(name)}-{split}-seed{seed}-{size}px-n{n}.safetensors")
    if cache.exists():
        images, labels, _ = _load_arrays(cache)
        return images[:limit], labels[:limit], classes  # samples come in seeded chunks: a prefix is a valid subset
    make = getattr(builtin_data, f"make_{name}")
    if limit is not None and limit < n:
        images, labels = make(limit, seed=seed, split=split, image_size=size)
        return images, labels, classes
    images, labels = make(n, seed=seed, split=split, image_size=size)
    _save_arrays(cache, images, labels, classes)
    return images, labels, classes


def _load_hf(name, split, cache_dir):
    hf_id = HF_DATASETS[name]
    cache = default_cache_dir(cache_dir) / "hub" / f"{hf_id.replace('/', '--')}-{split}.safetensors"
    if cache.exists():
        return _load_arrays(cache)
    import datasets
    from huggingface_hub import constants

    # fail fast: with no connection `datasets` retries for ~25 s; offline it fails (or uses HF's cache) at once
    reason = None if constants.HF_HUB_OFFLINE else hub_reachable()
    if reason is None:
        try:
            ds = datasets.load_dataset(hf_id, split=split)
        except (ConnectionError, OSError, RuntimeError) as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        except ValueError as e:  # unknown split and the like
            raise ValueError(f"{name!r} ({hf_id}): {e}") from e
    if reason is not None:
        raise ConnectionError(f"Could not load {name!r} from the Hugging Face Hub ({hf_id}): {reason}.\n"
                              + OFFLINE_HELP)

    img_col = next(k for k, f in ds.features.items() if isinstance(f, datasets.Image))
    lab_col = next(k for k, f in ds.features.items() if isinstance(f, datasets.ClassLabel))
    images = _to_nchw(np.stack([np.asarray(im) for im in ds[img_col]]), hf_id)
    labels, classes = torch.tensor(ds[lab_col], dtype=torch.int64), list(ds.features[lab_col].names)
    _save_arrays(cache, images, labels, classes)
    return images, labels, classes


def _resize(images, size, chunk=1024):
    """uint8 (N, C, H, W) -> uint8 (N, C, *size), bilinear with antialias, in chunks to bound memory."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    out = [F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
           for x in images.split(chunk)]
    return torch.cat(out).round().clamp(0, 255).to(torch.uint8) if out else images.new_zeros(0, images.shape[1], *size)


def _convert_channels(images, channels):
    """Drop alpha; 1 -> 3 by repeating, 3 -> 1 by ITU-R 601 luma."""
    if images.shape[1] in (2, 4):
        images = images[:, :-1]
    if channels is None or images.shape[1] == channels:
        return images
    if channels == 3:
        return images.repeat(1, 3, 1, 1)
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def _normalize_name(name):
    """'Fashion-MNIST', 'fashion_mnist', 'CIFAR-10' -> a DATASET_NAMES entry (other strings: lower-cased)."""
    squashed = "".join(ch for ch in name.strip().lower() if ch not in "-_ ")
    return {n.replace("_", ""): n for n in DATASET_NAMES}.get(squashed, name.strip().lower())


def load_dataset(name_or_path="digits", split="train", image_size=None, channels=None, limit=None, seed=0,
                 cache_dir=None):
    """Load a dataset by name (see DATASET_NAMES) or a path to a .npz, .zip or folder -> ImageDataset.

    image_size: int or (H, W) to resize to; channels: 1 (grayscale) or 3 (RGB); limit: keep `limit` images
    (a seeded random subset; a prefix for the built-in data); seed: the built-in data's generator seed.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or path, got {type(name_or_path).__name__}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty str such as 'train' or 'test', got {split!r}")
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
    elif image_size is not None:
        if not (isinstance(image_size, (tuple, list)) and len(image_size) == 2
                and all(isinstance(s, int) and s > 0 for s in image_size)):
            raise ValueError(f"image_size must be None, an int or (H, W), got {image_size!r}")
        image_size = tuple(image_size) if image_size[0] != image_size[1] else image_size[0]
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or a positive int, got {limit!r}")
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")

    key = _normalize_name(str(name_or_path))
    if key in builtin_data.BUILTINS:
        images, labels, classes = _load_builtin(key, split, limit, seed, image_size, cache_dir)
        limit, name = None, key
    elif key in HF_DATASETS:
        images, labels, classes = _load_hf(key, split, cache_dir)
        name = key
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            if path.suffix or os.sep in str(name_or_path) or "/" in str(name_or_path):
                raise FileNotFoundError(f"dataset file or folder not found: {str(path)!r}")
            raise ValueError(f"unknown dataset {str(name_or_path)!r}; valid names: {DATASET_NAMES}, "
                             "or a path to a .npz file, a .zip file or a folder of class folders")
        name = path.stem
        if path.suffix.lower() == ".npz":
            images, labels, classes = _load_npz(path, split)
        elif path.is_dir() or zipfile.is_zipfile(path):
            images, labels, classes = _load_image_files(path, split, limit, seed, image_size, cache_dir)
            limit = None  # already applied before decoding
        else:
            raise ValueError(f"cannot read {str(path)!r}: expected a .npz file, a .zip file or a folder")
    idx = _subset(len(images), limit, seed)
    if idx is not None:
        images, labels = images[idx], labels[idx]
    if image_size is not None:
        images = _resize(images, (image_size, image_size) if isinstance(image_size, int) else image_size)
    return ImageDataset(_convert_channels(images, channels), labels, classes, name=name)
