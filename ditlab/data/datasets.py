"""Image datasets: built-in generated ones, Hugging Face ones, and local .npz / .zip / folder files.

Everything is held in memory as one uint8 tensor (N, C, H, W) plus int64 labels (N,): small datasets
train fastest on a CPU from in-memory batches. `ds[i]` gives (x, y) with x float32 in [-1, 1].
Slow things (generating, decoding JPEGs, Hub downloads) are done once and cached as .safetensors in
`cache_dir`, `$DITLAB_CACHE` or `~/.cache/ditlab`.
"""
import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch.utils.data import Dataset

from ..extras import requires
from ..io import default_cache_dir, hub_reachable, load_tensors, save_tensors, uint8_to_float
from . import builtin
from .files import decode_images, image_files, read_npz, to_nchw

HF_DATASETS = {"mnist": "ylecun/mnist", "fashion_mnist": "zalando-datasets/fashion_mnist", "cifar10": "uoft-cs/cifar10"}
DATASET_NAMES = ["digits", "shapes", *HF_DATASETS]
OFFLINE_HELP = (
    "Alternatives that work offline:\n"
    "  * a local .npz with x_train/y_train (and x_test/y_test) arrays, e.g. load_dataset('path/to/mnist.npz')\n"
    "  * a .zip or folder of class-named image folders (<split>/<class>/*.png|jpg),"
    " e.g. load_dataset('path/to/cifar10.zip')\n"
    "  * a built-in generated dataset: load_dataset('digits') or load_dataset('shapes')")


class ImageDataset(Dataset):
    """Images as uint8 (N, C, H, W), labels as int64 (N,); items are (float32 (C, H, W) in [-1, 1], label)."""

    def __init__(self, images, labels, classes, name=""):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be an integer tensor of class ids, got {labels.dtype}")
        bad = (labels < 0) | (labels >= len(classes))
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"label {i} is {int(labels[i])}, outside the {len(classes)} classes (ids 0.."
                             f"{len(classes) - 1}); fix the labels or pass all class names")
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
            self._fingerprint = content_hash((self.images, self.labels), self.classes)
        return self._fingerprint

    def __repr__(self):
        return (f"ImageDataset(name={self.name!r}, n={len(self)}, channels={self.channels}, "
                f"image_size={self.image_size}, num_classes={self.num_classes})")


def content_hash(tensors, classes) -> str:
    """A short hex digest of CPU tensors' shapes and bytes plus the class names (a dataset's identity)."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(memoryview(t.contiguous().numpy()).cast("B"))
    h.update(json.dumps(list(classes)).encode())
    return h.hexdigest()


def _save_arrays(path, images, labels, classes):
    """Cache the decoded data; a write that fails (full disk, read-only folder) leaves nothing behind (atomic)
    and is a warning: the data is used without the cache."""
    try:
        save_tensors(path, {"images": images, "labels": labels}, {"classes": json.dumps(list(classes))})
    except (OSError, SafetensorError) as e:
        warnings.warn(f"could not write the dataset cache {path} ({e}); nothing half-written is left, and the data "
                      "is used without the cache (pass cache_dir= a folder with space to keep it)", stacklevel=3)


def _load_arrays(path):
    t, meta = load_tensors(path)
    return t["images"], t["labels"], json.loads(meta["classes"])


def _subset(n, limit, seed):
    """Indices of `limit` items after a seeded shuffle (all items, in order, when limit is None)."""
    if limit is None or limit >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]


def _loadimage_files(path, split, limit, seed, image_size, cache_dir):
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{split}|{limit}|{seed}".encode()).hexdigest()
    cache = default_cache_dir(cache_dir) / "files" / f"{path.stem}-{split}-{key[:16]}"
    sized = cache.with_name(f"{cache.name}-{image_size}.safetensors")
    for c in (cache.with_suffix(".safetensors"), sized):
        if c.exists():
            return _load_arrays(c)
    files, classes = image_files(path, split)
    idx = _subset(len(files), limit, seed)
    if idx is not None:
        files = [files[i] for i in idx.tolist()]
    images, resized = decode_images(path, [m for m, _ in files], image_size)
    labels = torch.tensor([y for _, y in files], dtype=torch.int64)
    _save_arrays(sized if resized else cache.with_suffix(".safetensors"), images, labels, classes)
    return images, labels, classes


def _load_builtin(name, split, limit, seed, image_size, cache_dir):
    n = builtin.DEFAULT_SIZES.get(split)
    if n is None:
        raise ValueError(f"split must be one of {list(builtin.DEFAULT_SIZES)} for {name!r}, got {split!r}")
    size = image_size if isinstance(image_size, int) else builtin.DEFAULT_IMAGE_SIZE
    classes = builtin.BUILTINS[name][1]
    cache = (default_cache_dir(cache_dir) / "builtin"
             / f"{builtin.recipe_id(name)}-{split}-seed{seed}-{size}px-n{n}.safetensors")
    if cache.exists():
        images, labels, _ = _load_arrays(cache)
        return images[:limit], labels[:limit], classes  # samples come in seeded chunks: a prefix is a valid subset
    make = getattr(builtin, f"make_{name}")
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
    with requires("hf"):
        import datasets  # heavy optional dependency (the [hf] extra)
        from huggingface_hub import constants  # heavy optional dependency (the [hf] extra)

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
    images = to_nchw(np.stack([np.asarray(im) for im in ds[img_col]]), hf_id)
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
    if key in builtin.BUILTINS:
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
            images, labels, classes = read_npz(path, split)
        elif path.is_dir() or zipfile.is_zipfile(path):
            images, labels, classes = _loadimage_files(path, split, limit, seed, image_size, cache_dir)
            limit = None  # already applied before decoding
        else:
            raise ValueError(f"cannot read {str(path)!r}: expected a .npz file, a .zip file or a folder")
    idx = _subset(len(images), limit, seed)
    if idx is not None:
        images, labels = images[idx], labels[idx]
    if image_size is not None:
        images = _resize(images, (image_size, image_size) if isinstance(image_size, int) else image_size)
    return ImageDataset(_convert_channels(images, channels), labels, classes, name=name)
