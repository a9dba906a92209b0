"""The judge: a small classifier trained on the real images of a dataset, cached on disk.

ditlab scores samples with it (see `metrics.py`): its predicted class gives the conditional accuracy and
its penultimate layer (128-d) the features for a Fréchet distance -- a fast, offline stand-in for the
Inception-V3 network behind the paper's FID (§4). `get_judge` trains one once and caches it in
`cache_dir/judges/` (`cache_dir`, $DITLAB_CACHE or ~/.cache/ditlab), keyed by the data's content hash and the
recipe: a small CNN for grayscale data (well under a minute on a CPU, >= 98 % test accuracy on MNIST / the built-in
digits), a small ResNet for RGB data (CIFAR-10: 87.2 %, 75 CPU-min, once; docs/training.md, the judges).
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
from .judge_nets import RECIPES, augment, default_arch, make_body, make_optimizer

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
JUDGE_VERSION = 2  # bump when the architecture or the recipe changes (invalidates cached judges)


class Judge(nn.Module):
    """Classifier bound to one input shape (channels, H, W): a body (judge_nets: "cnn" or "resnet") -> 128 features
    -> classes."""

    def __init__(self, channels=1, image_size=32, num_classes=10, width=None, feat_dim=128, classes=None, arch="cnn"):
        super().__init__()
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        one_of("channels", channels, (1, 3))
        one_of("arch", arch, tuple(RECIPES))
        integer(f"image_size {image_size!r} (an int or (H, W)): its smaller side", min(hw) if len(hw) == 2 else 0, min=8)
        integer("num_classes", num_classes, min=2)
        self.channels, self.hw, self.num_classes, self.arch = channels, hw, num_classes, arch
        width = width or RECIPES[arch]["width"]
        self.classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        self.config = dict(channels=channels, image_size=list(hw), num_classes=num_classes, width=width,
                           feat_dim=feat_dim, classes=self.classes, arch=arch)
        self.info = {}  # how it was trained: dataset, steps, test accuracy, ... (saved with the weights)
        self.body = make_body(arch, channels, width, feat_dim)  # (N, C, H, W) -> (N, feat_dim): the FD features
        self.head = nn.Linear(feat_dim, num_classes)           # (N, num_classes) logits
        self.flip_average = arch == "resnet"  # natural images: features averaged over the image and its mirror

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
        feats = [self._features(b.to(device)) for b in x.split(batch_size)]
        self.train(was_training)
        feats = torch.cat(feats)
        return feats.float().cpu(), self.head(feats).float().cpu()

    def _features(self, x):
        if self.flip_average:
            return (self.body(x) + self.body(x.flip(-1))) / 2  # (N, feat_dim): test-time flip averaging
        return self.body(x)

    def features(self, images, batch_size=500):
        return self.embed(images, batch_size)[0]

    def predict(self, images, batch_size=500):
        """-> predicted class indices (N,)."""
        return self.embed(images, batch_size)[1].argmax(1)

    def extra_repr(self):
        acc = self.info.get("test_accuracy")
        return (f"arch={self.arch}, channels={self.channels}, image_size={self.image_size}, num_classes={self.num_classes}"
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

def train_judge(dataset, steps=None, batch_size=None, lr=None, width=None, seed=0, device=None, progress=True,
                arch=None):
    """Train a Judge on an ImageDataset (uint8 `.images`, `.labels`, `.classes`) with its body's recipe (judge_nets):
    arch None: "resnet" for RGB, "cnn" for grayscale; unset steps / batch_size / lr / width: the recipe's."""
    n = len(dataset.images)
    integer("the number of dataset images", n, min=2)
    arch = arch or default_arch(dataset.images.shape[1])
    one_of("arch", arch, tuple(RECIPES))
    steps, batch_size, lr = (v or RECIPES[arch][k] for k, v in (("steps", steps), ("batch_size", batch_size), ("lr", lr)))
    device = torch.device(device or "cpu")
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG untouched
        torch.manual_seed(seed)
        judge = Judge(dataset.images.shape[1], tuple(dataset.images.shape[-2:]), len(dataset.classes),
                      width=width, classes=dataset.classes, arch=arch).to(device)
    if arch == "resnet":
        judge = judge.to(memory_format=torch.channels_last)  # faster convolutions on CPUs (oneDNN)
    opt, sched, smoothing = make_optimizer(arch, judge.parameters(), lr, steps)
    g = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(n, generator=g), 0
    judge.train()
    bar = tqdm(range(steps), desc="training the judge", disable=not progress, leave=False)
    for step in bar:
        if pos + batch_size > n:  # new epoch
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        x, y = uint8_to_float(dataset.images[idx]), dataset.labels[idx]  # (B, C, H, W), (B,)
        if arch == "resnet":
            x = augment(x, g).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(judge(x.to(device)), y.to(device), label_smoothing=smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return judge.to(memory_format=torch.contiguous_format).eval()  # as load_judge gives it: the same numbers


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
                  classes=cfg["classes"], arch=cfg.get("arch", "cnn"))
    judge.load_state_dict(tensors)
    judge.info = json.loads(meta.get("info", "{}"))
    return judge.to(device or "cpu").eval()


def get_judge(dataset="digits", image_size=None, channels=None, *, test_dataset=None, limit=None, steps=None,
              batch_size=None, arch=None, seed=0, cache_dir=None, device=None, progress=True, retrain=False,
              smoke=False):
    """A judge for `dataset` (a name/path for `load_dataset`, or an ImageDataset): from the cache, else trained.

    Trained on the train split with the recipe of its body (`arch`: "cnn" for grayscale, "resnet" for RGB by
    default; unset steps / batch_size: the recipe's, see judge_nets.RECIPES); accuracy on `test_dataset` (default:
    the "test" split when it exists) is in `judge.info["test_accuracy"]`. `smoke=True`: the cnn, 20 steps on 2048
    images, for pipeline checks only (trained in seconds; its accuracy means nothing).
    """
    named = isinstance(dataset, (str, os.PathLike))
    if smoke:
        steps, arch, limit = 20, "cnn", (limit or 2048) if named else limit
    if steps is not None:
        integer("steps", steps, min=1)
    if arch is not None:
        one_of("arch", arch, tuple(RECIPES))
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
    arch = arch or default_arch(c)
    steps, batch_size = steps or RECIPES[arch]["steps"], batch_size or RECIPES[arch]["batch_size"]
    recipe = dict(version=JUDGE_VERSION, data=_fingerprint(train), arch=arch, steps=steps, batch_size=batch_size,
                  seed=seed)
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    path = default_cache_dir(cache_dir) / "judges" / f"{name}-{c}x{h}x{w}-v{JUDGE_VERSION}-{key}.safetensors"
    if path.exists() and not retrain:
        return load_judge(path, device)

    t0, cpu0 = time.perf_counter(), time.process_time()
    judge = train_judge(train, steps=steps, batch_size=batch_size, seed=seed, device=device, progress=progress,
                        arch=arch)
    judge.info = dict(recipe, dataset=name, n_train=len(train.images), train_seconds=round(time.perf_counter() - t0, 1),
                      train_cpu_seconds=round(time.process_time() - cpu0, 1), threads=torch.get_num_threads())
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
