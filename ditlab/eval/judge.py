"""The judge: a small CNN classifier trained on the real images of a dataset, cached on disk.

ditlab scores samples with it (see `metrics.py`): its predicted class gives the conditional accuracy and
its penultimate layer (128-d) the features for a Fréchet distance -- a fast, offline stand-in for the
Inception-V3 network behind the paper's FID (§4). `get_judge` trains one in well under a minute on a CPU
(≥ 98 % test accuracy on MNIST / the built-in digits) and caches it in `cache_dir/judges/`
(`cache_dir`, $DITLAB_CACHE or ~/.cache/ditlab), keyed by the data's content hash and the recipe.
"""
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checks import integer, number, of_type, one_of
from ..data import load_dataset
from ..io import atomic_write, default_cache_dir, load_tensors, save_tensors, uint8_to_float

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
JUDGE_VERSION = 1  # bump when the architecture or the recipe changes (invalidates cached judges)


class Judge(nn.Module):
    """CNN classifier bound to one input shape (channels, H, W): 32 px -> 16 -> 8 -> 4, then 1024 -> 128 -> classes."""

    def __init__(self, channels=1, image_size=32, num_classes=10, width=32, feat_dim=128, classes=None):
        super().__init__()
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        one_of("channels", channels, (1, 3))
        integer(f"image_size {image_size!r} (an int or (H, W)): its smaller side", min(hw) if len(hw) == 2 else 0, min=8)
        integer("num_classes", num_classes, min=2)

        def block(c_in, c_out, k=3, stride=1):
            return [nn.Conv2d(c_in, c_out, k, stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]

        self.channels, self.hw, self.num_classes = channels, hw, num_classes
        self.classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        self.config = dict(channels=channels, image_size=list(hw), num_classes=num_classes, width=width,
                           feat_dim=feat_dim, classes=self.classes)
        self.info = {}  # how it was trained: dataset, steps, test accuracy, ... (saved with the weights)
        self.body = nn.Sequential(
            *block(channels, width, k=4, stride=2),            # (N, w, H/2, W/2): strided stem, cheap on a CPU
            *block(width, width), nn.MaxPool2d(2),             # (N, w, H/4, W/4)
            *block(width, 2 * width), nn.MaxPool2d(2),         # (N, 2w, H/8, W/8)
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),             # (N, 32w)
            nn.Linear(32 * width, feat_dim), nn.GELU())        # (N, feat_dim): the features used for the FD
        self.head = nn.Linear(feat_dim, num_classes)           # (N, num_classes) logits

    @property
    def image_size(self):
        return self.hw[0] if self.hw[0] == self.hw[1] else self.hw

    def forward(self, x):
        return self.head(self.body(x))

    @torch.no_grad()
    def embed(self, images, batch_size=500):
        """float images (N, C, H, W) in [-1, 1] -> (features (N, feat_dim), logits (N, classes)), float32 on CPU."""
        x = check_images(self, images)
        was_training, device = self.training, next(self.parameters()).device
        self.eval()
        feats = [self.body(b.to(device)) for b in x.split(batch_size)]
        self.train(was_training)
        feats = torch.cat(feats)
        return feats.float().cpu(), self.head(feats).float().cpu()

    def features(self, images, batch_size=500):
        return self.embed(images, batch_size)[0]

    def predict(self, images, batch_size=500):
        """-> predicted class indices (N,)."""
        return self.embed(images, batch_size)[1].argmax(1)

    def extra_repr(self):
        acc = self.info.get("test_accuracy")
        return (f"channels={self.channels}, image_size={self.image_size}, num_classes={self.num_classes}"
                + (f", test_accuracy={acc:.4f}" if acc is not None else ""))


def check_images(judge, images, name="images"):
    """Validate images for `judge` -> float32 tensor (N, C, H, W) clamped to [-1, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    of_type(name, images, torch.Tensor, "a torch.Tensor or numpy array (N, C, H, W)")
    one_of(f"{name}.dtype", images.dtype, FLOATS, " (float in [-1, 1]: convert uint8 pixels with ditlab.io.uint8_to_float)")
    want = (judge.channels, *judge.hw)
    one_of(f"{name}.shape[1:]", tuple(images.shape[1:]), [want], f" (images (N, {', '.join(map(str, want))}) for this "
           f"judge: channels={judge.channels}, image_size={judge.image_size})")
    integer(f"the number of {name}", len(images), min=1)
    for value, bound in ((images.min().item(), dict(min=-2)), (images.max().item(), dict(max=2))):
        number(f"{name} (float in [-1, 1]; pixels in [0, 255]? use ditlab.io.uint8_to_float): a value", value, **bound)
    return images.float().clamp(-1, 1)  # like saving an image would


def check_labels(judge, labels, n):
    """Validate class labels for n images -> int64 tensor (N,) on CPU."""
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    one_of("labels.shape", tuple(labels.shape), [(n,)], " (one label per image)")
    for value in (labels.min(), labels.max()) if n else ():
        integer("labels", int(value), min=0, max=judge.num_classes - 1)
    return labels.long().cpu()


# ---------------------------------------------------------------------------------------------- training

def train_judge(dataset, steps=400, batch_size=128, lr=3e-3, width=32, seed=0, device=None, progress=True):
    """Train a Judge on an ImageDataset (uint8 `.images`, `.labels`, `.classes`): AdamW, one-cycle lr."""
    n = len(dataset.images)
    integer("the number of dataset images", n, min=2)
    device = torch.device(device or "cpu")
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG untouched
        torch.manual_seed(seed)
        judge = Judge(dataset.images.shape[1], tuple(dataset.images.shape[-2:]), len(dataset.classes),
                      width=width, classes=dataset.classes).to(device)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    g = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(n, generator=g), 0
    judge.train()
    bar = tqdm(range(steps), desc="training the judge", disable=not progress, leave=False)
    for step in bar:
        if pos + batch_size > n:  # new epoch
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        x, y = uint8_to_float(dataset.images[idx]).to(device), dataset.labels[idx].to(device)  # (B, C, H, W), (B,)
        loss = F.cross_entropy(judge(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return judge.eval()


def save_judge(judge, path):
    """Weights + config + info in one .safetensors (atomic), and a readable .json beside it."""
    path = Path(path)
    meta = {"format": "ditlab-judge", "version": str(JUDGE_VERSION),
            "config": json.dumps(judge.config), "info": json.dumps(judge.info)}
    save_tensors(path, {k: v.detach().cpu() for k, v in judge.state_dict().items()}, meta)
    text = json.dumps({"version": JUDGE_VERSION, "config": judge.config, "info": judge.info}, indent=1)
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    return path


def load_judge(path, device=None):
    """Load a judge written by `save_judge` (eval mode)."""
    tensors, meta = load_tensors(path)
    one_of(f"{path}: metadata format", meta.get("format"), ["ditlab-judge"], " (else: not a ditlab judge file)")
    cfg = json.loads(meta["config"])
    judge = Judge(cfg["channels"], tuple(cfg["image_size"]), cfg["num_classes"], cfg["width"], cfg["feat_dim"],
                  classes=cfg["classes"])
    judge.load_state_dict(tensors)
    judge.info = json.loads(meta.get("info", "{}"))
    return judge.to(device or "cpu").eval()


def get_judge(dataset="digits", image_size=None, channels=None, *, test_dataset=None, limit=None, steps=400,
              batch_size=128, seed=0, cache_dir=None, device=None, progress=True, retrain=False, smoke=False):
    """A judge for `dataset` (a name/path for `load_dataset`, or an ImageDataset): from the cache, else trained.

    Trained on the train split; accuracy on `test_dataset` (default: the "test" split when it exists) is in
    `judge.info["test_accuracy"]`. `smoke=True`: 20 steps on 2048 images, for pipeline checks only.
    """
    named = isinstance(dataset, (str, os.PathLike))
    if smoke:
        steps, limit = 20, (limit or 2048) if named else limit
    integer("steps", steps, min=1)
    if named:
        train = load_dataset(dataset, "train", image_size, channels, limit=limit, cache_dir=cache_dir)
        if test_dataset is None:
            try:
                test_dataset = load_dataset(dataset, "test", image_size, channels, cache_dir=cache_dir)
            except (ValueError, FileNotFoundError, ConnectionError):
                test_dataset = None  # no test split: no held-out accuracy
    elif hasattr(dataset, "images") and hasattr(dataset, "labels") and hasattr(dataset, "classes"):
        train = dataset
        shape = tuple(train.images.shape[1:])
        for arg, val, have in (("image_size", image_size, shape[1:]), ("channels", channels, shape[0])):
            if val is not None and val != have and (val, val) != have:
                raise ValueError(f"{arg}={val!r} does not match the dataset ({have}); use load_dataset(..., {arg}=...)")
        one_of("limit", limit, [None], " (limit applies when dataset is a name or path; subset the ImageDataset)")
    else:
        raise TypeError(f"dataset must be a name, a path or an ImageDataset, got {type(dataset).__name__}")

    name = getattr(train, "name", "") or "data"
    c, h, w = train.images.shape[1:]
    recipe = dict(version=JUDGE_VERSION, data=_fingerprint(train), steps=steps, batch_size=batch_size, seed=seed)
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    path = default_cache_dir(cache_dir) / "judges" / f"{name}-{c}x{h}x{w}-v{JUDGE_VERSION}-{key}.safetensors"
    if path.exists() and not retrain:
        return load_judge(path, device)

    t0 = time.perf_counter()
    judge = train_judge(train, steps=steps, batch_size=batch_size, seed=seed, device=device, progress=progress)
    judge.info = dict(recipe, dataset=name, n_train=len(train.images), train_seconds=round(time.perf_counter() - t0, 1))
    if test_dataset is not None and tuple(test_dataset.images.shape[1:]) == (c, h, w):
        x = uint8_to_float(test_dataset.images)
        acc = (judge.predict(x) == test_dataset.labels).float().mean().item()
        judge.info.update(test_accuracy=acc, n_test=len(x))
    save_judge(judge, path)
    return judge


def _fingerprint(ds):
    if hasattr(ds, "fingerprint"):
        return ds.fingerprint
    h = hashlib.blake2b(digest_size=16)
    for t in (ds.images, ds.labels):
        h.update(str(tuple(t.shape)).encode())
        h.update(memoryview(t.contiguous().numpy()).cast("B"))
    h.update(json.dumps(list(ds.classes)).encode())
    return h.hexdigest()
