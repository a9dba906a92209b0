"""Reading local image files: a .npz of arrays, or a .zip / folder of class-named image folders.

Layouts: `<split>/<class>/<image>` or `<class>/<image>` (one wrapper folder shared by all files is skipped).
"""
import io
import os
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..checks import refuse

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_DIRS = {"train", "test", "val", "valid", "validation"}


def to_nchw(x, where):
    """Images (N, H, W) or (N, H, W, C) or (N, C, H, W) -> uint8 (N, C, H, W). Floats in [0, 1] are scaled to
    [0, 255]; NaN/inf and values outside [0, 255] are refused with the first offending image and value."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3, 4)):
        raise ValueError(f"{where}: images must be (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{where}: images must be uint8 (or floats in [0, 1]), got {x.dtype}")
    bad = ~np.isfinite(x) if np.issubdtype(x.dtype, np.floating) else np.zeros(x.shape, bool)
    if x.size and not bad.any() and x.min() >= 0 and x.max() <= 1 and np.issubdtype(x.dtype, np.floating):
        x = x * 255.0
    bad |= (x < 0) | (x > 255)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise ValueError(f"{where}: image {i[0]} holds {x[tuple(i)].item()!r} at (channel, row, col) {tuple(i[1:].tolist())}; "
                         f"images must be uint8, or floats that are all in [0, 1] or all in [0, 255] (no NaN/inf)")
    return torch.from_numpy(np.ascontiguousarray(np.round(x).astype(np.uint8)))


def to_labels(y, where) -> torch.Tensor:
    """Class ids -> int64 (N,); floats must be whole numbers (5.7 is refused, not truncated), booleans are refused."""
    y = np.asarray(y).ravel()
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"{where}: labels must be integer class ids 0..K-1, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{where}: label {i} is {y[i].item()!r}, not a whole number; labels must be class ids 0..K-1")
    y = torch.from_numpy(y.astype(np.int64))
    if len(y) and y.min() < 0:
        i = int(torch.argmax((y < 0).int()))
        raise ValueError(f"{where}: label {i} is {int(y[i])}; class ids must be >= 0")
    return y


def infer_classes(labels: torch.Tensor, where) -> list[str]:
    """Class names "0".."K-1" for K = max label + 1, refused when most of those ids never occur (a stray label
    such as 1 000 000 would otherwise build a million-class model)."""
    if not len(labels):
        return []
    k, used = int(labels.max()) + 1, len(torch.unique(labels))
    if 2 * used < k:
        i = int(torch.argmax(labels))
        raise ValueError(f"{where}: label {i} is {k - 1}, which makes {k} classes, but only {used} distinct ids occur; "
                         f"relabel the classes as 0..{used - 1}, or store a `classes` array naming all {k} classes")
    return [str(i) for i in range(k)]


def read_npz(path, split):
    """.npz with x_<split>/y_<split> (and optional `classes`) -> (uint8 (N, C, H, W), labels, class names)."""
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
        shape = check_npz_sizes(path, f, [xk, yk])[yk]
        images = to_nchw(f[xk], f"{path} {xk}")  # (N, C, H, W), its shape checked first
        n = len(images)
        refuse(f"{path} {yk}", [(shape not in ((n,), (n, 1)), f"labels must have shape ({n},), one per image of {xk}, "
                                 f"got {shape}; store one class id per image")])
        labels = to_labels(f[yk], f"{path} {yk}")
        classes = [str(c) for c in f["classes"]] if "classes" in f else None
    return images, labels, classes if classes is not None else infer_classes(labels, f"{path} {yk}")


def check_npz_sizes(path, f, keys) -> dict:
    """Shapes of `keys` in an open .npz, read from their .npy headers before any data; a header that claims more
    bytes than its member holds (a corrupt or hostile file would make numpy allocate them) is refused."""
    shapes = {}
    for key in keys:
        with f.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(member)
        claimed, held = int(np.prod(shape, dtype=object)) * dtype.itemsize, f.zip.getinfo(f"{key}.npy").file_size
        refuse(f"{path} {key}", [(claimed > held, f"the header claims shape {shape} of {dtype} ({claimed:,} bytes) but "
                                  f"the file holds {held:,} bytes; the file is corrupt, re-create it")])
        shapes[key] = tuple(shape)
    return shapes


def list_images(path):
    """Relative posix paths of the image files inside a .zip or folder."""
    if path.is_dir():
        names = [(Path(top) / f).relative_to(path).as_posix()
                 for top, _, files in os.walk(path, onerror=_unlistable) for f in files]
    else:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    return sorted(n for n in names if PurePosixPath(n).suffix.lower() in IMAGE_EXTS
                  and not any(p.startswith((".", "__MACOSX")) for p in PurePosixPath(n).parts))


def _unlistable(e: OSError):
    raise ValueError(f"cannot list the folder {e.filename!r} ({e.strerror}): its images would be left out of the "
                     "data; check its permissions (chmod -R u+rX) or move it out") from e


def image_files(path, split):
    """-> (list of (member, label), class names) for `<split>/<class>/*` or `<class>/*` layouts."""
    parts = [PurePosixPath(n).parts for n in list_images(path)]
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


def decode_images(path, members, image_size):
    """Decode images with PIL -> (uint8 (N, C, H, W), resized?). Mixed sizes are centre-cropped and resized."""
    zf = None if path.is_dir() else zipfile.ZipFile(path)
    out, mode = [], None
    try:
        for m in tqdm(members, desc=f"decoding {path.name}", disable=len(members) < 2000, leave=False):
            try:
                data = (path / m).read_bytes() if zf is None else zf.read(m)
            except OSError as e:  # permission denied, vanished, unreadable member
                raise ValueError(f"{path}: cannot read image {m!r} ({e.strerror or e}); check its permissions") from e
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    im = Image.open(io.BytesIO(data))
                mode = mode or ("L" if im.mode in ("1", "L", "LA", "I", "I;16") else "RGB")
                out.append(im.convert(mode))
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise ValueError(f"{path}: image {m!r} is too large to decode safely ({e}); shrink it or remove "
                                 "it (a decompression bomb, or a photo far larger than a DiT needs)") from e
            except (OSError, SyntaxError, ValueError, EOFError) as e:  # PIL: unidentified, truncated, corrupt
                raise ValueError(f"{path}: cannot decode image {m!r} ({type(e).__name__}: {e}); "
                                 f"remove or replace that file") from e
    finally:
        if zf is not None:
            zf.close()
    resized = len({im.size for im in out}) > 1
    if resized:
        if image_size is None:
            raise ValueError(f"{path}: images have different sizes; pass image_size= to crop and resize them")
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        out = [crop_resize(im, w, h) for im in out]
    arr = np.stack([np.asarray(im) for im in out]) if out else np.zeros((0, 1, 1), np.uint8)
    return to_nchw(arr, str(path)), resized


def crop_resize(im, w, h):
    """Centre-crop a PIL image to aspect w:h, then resize to (w, h)."""
    W, H = im.size
    cw, ch = min(W, round(H * w / h)), min(H, round(W * h / w))
    left, top = (W - cw) // 2, (H - ch) // 2
    return im.crop((left, top, left + cw, top + ch)).resize((w, h), Image.LANCZOS)
