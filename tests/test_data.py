"""Tests for ditlab.data and ditlab.data.builtin (offline, seconds)."""
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CIFAR, MNIST, needs_cifar, needs_mnist
from ditlab.data import ImageDataset, builtin, load_dataset
from ditlab.data import datasets as ditlab_datasets
from ditlab.io import default_cache_dir, float_to_uint8, uint8_to_float

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Never write to ~/.cache in tests."""
    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "cache"))


def _check_dataset(ds, n, channels, size, num_classes):
    assert isinstance(ds, ImageDataset) and len(ds) == n
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (n, channels, size, size)
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
    assert 0 <= ds.labels.min() and ds.labels.max() < num_classes == ds.num_classes == len(ds.classes)
    assert ds.channels == channels and ds.image_size == size
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (channels, size, size) and -1 <= x.min() and x.max() <= 1
    assert torch.equal(x, ds.images[0].float() / 127.5 - 1) and y == ds.labels[0]


# ---------------------------------------------------------------- built-in data
def test_digits_look_like_mnist():
    ds = load_dataset("digits", split="test", limit=500)
    _check_dataset(ds, 500, 1, 32, 10)
    assert ds.classes == [str(d) for d in range(10)] and ds.name == "digits"
    img = ds.images[:, 0].float()
    assert img[:, :3, :3].max() == 0 and img.max() == 255  # white digit on a black background
    ys = torch.arange(32.0).view(1, 32, 1)
    com = (img * ys).sum((1, 2)) / img.sum((1, 2))  # vertical centre of mass, centred like MNIST
    assert abs(com.mean() - 15.5) < 1.0
    ink = img.mean((1, 2))
    assert ink[ds.labels == 1].mean() < ink[ds.labels == 8].mean()  # a "1" has less ink than an "8"
    assert torch.bincount(ds.labels, minlength=10).min() > 20  # all classes present


def test_digits_are_learnable_by_nearest_neighbour():
    train = load_dataset("digits", limit=3000)
    test = load_dataset("digits", split="test", limit=300)

    def unit(x):
        x = x.flatten(1).float()
        x = x - x.mean(1, keepdim=True)
        return x / x.norm(dim=1, keepdim=True)

    pred = train.labels[(unit(test.images) @ unit(train.images).T).argmax(1)]
    assert (pred == test.labels).float().mean() > 0.85  # 1-NN on raw pixels; a small CNN gets > 95 %


def test_shapes():
    ds = load_dataset("Shapes", split="test", limit=300)
    _check_dataset(ds, 300, 3, 32, 10)
    assert ds.classes == builtin.SHAPE_CLASSES and ds.name == "shapes"
    rgb = ds.images.float()
    assert (rgb[:, 0] - rgb[:, 1]).abs().mean() > 10  # coloured, not gray
    centre, corner = rgb[:, :, 12:20, 12:20].mean(), rgb[:, :, :3, :3].mean()
    assert centre > corner + 20  # bright shapes on a dark background


@pytest.mark.parametrize("make", [builtin.make_digits, builtin.make_shapes])
def test_builtin_deterministic_by_seed(make):
    a, ya = make(120, seed=0)
    b, yb = make(120, seed=0)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    c, _ = make(120, seed=1)
    d, _ = make(120, seed=0, split="test")
    assert not torch.equal(a, c) and not torch.equal(a, d)
    long, ylong = make(300, seed=0)  # samples come in seeded chunks of 256: any n gives the same prefix
    assert torch.equal(long[:120], a) and torch.equal(ylong[:120], ya)


def test_builtin_image_size_and_channels():
    ds = load_dataset("digits", limit=8, image_size=28, channels=3)
    _check_dataset(ds, 8, 3, 28, 10)
    assert torch.equal(ds.images[:, 0], ds.images[:, 1])
    ds = load_dataset("shapes", limit=8, image_size=(16, 24), channels=1)
    assert ds.images.shape == (8, 1, 16, 24) and ds.image_size == (16, 24)


def test_builtin_cache_hit(tmp_path, monkeypatch):
    first = load_dataset("digits", split="test", cache_dir=tmp_path)  # 2000 images, generated then cached
    files = list((tmp_path / "builtin").iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"  # no temp files left behind

    def boom(*args, **kwargs):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(builtin, "make_digits", boom)
    again = load_dataset("digits", split="test", cache_dir=tmp_path)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    part = load_dataset("digits", split="test", cache_dir=tmp_path, limit=50)
    assert torch.equal(part.images, first.images[:50])


@pytest.mark.slow
def test_small_cnn_classifies_digits():
    torch.manual_seed(0)
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(64 * 8 * 8, 10))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(3):
        for idx in torch.randperm(len(train)).split(128):
            x, y = train.get_batch(idx)
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        x, y = test.get_batch(torch.arange(len(test)))
        assert (net(x).argmax(1) == y).float().mean() > 0.95


# ---------------------------------------------------------------- local files
@needs_mnist
def test_npz_mnist_subset_resize_channels():
    with np.load(MNIST) as f:
        x_train, y_train, n_test = f["x_train"], f["y_train"], len(f["y_test"])
    ds = load_dataset(str(MNIST), limit=64, seed=3)
    _check_dataset(ds, 64, 1, 28, 10)
    assert ds.name == "mnist" and ds.classes == [str(d) for d in range(10)]
    idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(3))[:64].numpy()
    assert np.array_equal(ds.images[:, 0].numpy(), x_train[idx]) and np.array_equal(ds.labels.numpy(), y_train[idx])
    assert len(load_dataset(MNIST, split="test")) == n_test
    big = load_dataset(MNIST, limit=64, seed=3, image_size=32, channels=3)
    _check_dataset(big, 64, 3, 32, 10)
    assert torch.equal(big.images[:, 0], big.images[:, 2])
    assert abs(big.images.float().mean() - ds.images.float().mean()) < 1.0  # resizing keeps brightness


@needs_cifar
def test_zip_cifar_labels_match_class_folders(tmp_path, monkeypatch):
    ds = load_dataset(CIFAR, limit=40, seed=1, cache_dir=tmp_path)
    _check_dataset(ds, 40, 3, 32, 10)
    assert ds.classes == CIFAR_CLASSES and ds.name == "cifar10"
    # the same seeded subset of the member list, decoded by hand: image and class folder must match
    with zipfile.ZipFile(CIFAR) as z:
        members = sorted(n for n in z.namelist() if n.startswith("train/") and n.endswith(".jpg"))
        pick = torch.randperm(len(members), generator=torch.Generator().manual_seed(1))[:40].tolist()
        for i, j in enumerate(pick[:5]):
            img = np.asarray(Image.open(io.BytesIO(z.read(members[j]))).convert("RGB"))
            assert np.array_equal(ds.images[i].permute(1, 2, 0).numpy(), img)
            assert ds.classes[ds.labels[i]] == members[j].split("/")[1]
    monkeypatch.setattr(ditlab_datasets, "decode_images", lambda *a: pytest.fail("decoded again instead of using the cache"))
    again = load_dataset(CIFAR, limit=40, seed=1, cache_dir=tmp_path)
    assert torch.equal(again.images, ds.images) and torch.equal(again.labels, ds.labels)
    gray = load_dataset(CIFAR, limit=40, seed=1, cache_dir=tmp_path, channels=1, image_size=16)
    assert gray.images.shape == (40, 1, 16, 16)


def _png(color, size=(8, 8), mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_folder_without_splits(tmp_path):
    root = tmp_path / "pets"
    for cls, color in [("red", (255, 0, 0)), ("blue", (0, 0, 255))]:
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(_png(color))
    ds = load_dataset(root, cache_dir=tmp_path / "c")
    _check_dataset(ds, 6, 3, 8, 2)
    assert ds.classes == ["blue", "red"]
    for x, y in zip(ds.images, ds.labels):
        assert x[2 if ds.classes[y] == "blue" else 0].float().mean() == 255
    with pytest.raises(ValueError, match="split"):
        load_dataset(root, split="test", cache_dir=tmp_path / "c")


def test_zip_with_wrapper_folder_mixed_sizes_and_grayscale(tmp_path):
    path = tmp_path / "faces.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("faces/train/a/0.png", _png(10, (20, 10), "L"))
        z.writestr("faces/train/b/0.png", _png(200, (12, 12), "L"))
        z.writestr("faces/test/c/0.png", _png(90, (8, 8), "L"))
    with pytest.raises(ValueError, match="image_size"):
        load_dataset(path, cache_dir=tmp_path / "c")
    ds = load_dataset(path, image_size=6, cache_dir=tmp_path / "c")
    _check_dataset(ds, 2, 1, 6, 3)
    assert ds.classes == ["a", "b", "c"]  # union over splits: labels agree between train and test
    assert ds.images[ds.labels == 0].float().mean() == 10 and ds.images[ds.labels == 1].float().mean() == 200
    test = load_dataset(path, split="test", cache_dir=tmp_path / "c")
    assert test.labels.tolist() == [2] and test.image_size == 8
    with pytest.raises(ValueError, match="available splits"):
        load_dataset(path, split="val", cache_dir=tmp_path / "c")


def test_corrupt_or_truncated_image_in_a_zip_is_named(tmp_path):
    good = _png(100, (8, 8), "L")
    for name, data in [("truncated", good[: len(good) // 2]), ("random", os.urandom(300))]:
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("train/a/0.png", good)
            z.writestr("train/b/bad.png", data)
        with pytest.raises(ValueError, match=f"{name}.zip: cannot decode image 'train/b/bad.png'"):
            load_dataset(path, cache_dir=tmp_path / "c")


# ---------------------------------------------------------------- Hugging Face
def test_hub_offline_fails_fast_with_alternatives(monkeypatch, tmp_path):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    asked = []

    def offline_datasets(hf_id, **kwargs):  # what `datasets` does offline without a local copy: fail at once
        asked.append(hf_id)
        raise ConnectionError(f"Couldn't reach '{hf_id}' on the Hub (offline mode is enabled)")
    monkeypatch.setattr(datasets, "load_dataset", offline_datasets)
    monkeypatch.setattr(ditlab_datasets, "hub_reachable", lambda: pytest.fail("offline: no network probe"))
    for name in ["MNIST", "fashion-mnist", "CIFAR10"]:
        with pytest.raises(ConnectionError) as err:
            load_dataset(name, cache_dir=tmp_path)
        msg = str(err.value)
        assert "mnist.npz" in msg and "cifar10.zip" in msg and "digits" in msg and "shapes" in msg
    assert len(asked) == 3  # once each (HF's own cache may hold it), never retried
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("no connection: never asked"))
    # online mode but no connection: the probe answers, `datasets` is never asked (it would retry for ~25 s)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(ditlab_datasets, "hub_reachable", lambda: "cannot connect to huggingface.co")
    with pytest.raises(ConnectionError, match="cannot connect"):
        load_dataset("mnist")


def test_hub_dataset_converted_and_cached(tmp_path, monkeypatch):
    import datasets
    from huggingface_hub import constants

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    fake = datasets.Dataset.from_dict(
        {"img": [Image.new("RGB", (4, 4), (i * 40, 0, 0)) for i in range(5)], "label": [0, 1, 1, 0, 1]},
        features=features)
    calls = []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(ditlab_datasets, "hub_reachable", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda hf_id, split: calls.append((hf_id, split)) or fake)
    ds = load_dataset("cifar-10", cache_dir=tmp_path)
    assert calls == [("uoft-cs/cifar10", "train")]
    _check_dataset(ds, 5, 3, 4, 2)
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 1, 1, 0, 1]
    assert ds.images[:, 0, 0, 0].tolist() == [0, 40, 80, 120, 160]
    again = load_dataset("cifar10", cache_dir=tmp_path, limit=2)  # from the cache: no new call
    assert calls == [("uoft-cs/cifar10", "train")] and len(again) == 2


# ---------------------------------------------------------------- errors and helpers
def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="digits"):
        load_dataset("imagenet")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_dataset(tmp_path / "nope.npz")
    bad = tmp_path / "x.npz"
    np.savez(bad, images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="x_train"):
        load_dataset(bad)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="notes.txt"):
        load_dataset(tmp_path / "notes.txt")
    (tmp_path / "broken.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="broken.npz"):
        load_dataset(tmp_path / "broken.npz")
    for kwargs, word in [({"channels": 2}, "channels"), ({"image_size": 0}, "image_size"),
                         ({"image_size": (1, 2, 3)}, "image_size"), ({"limit": 0}, "limit"),
                         ({"split": "val"}, "split")]:
        with pytest.raises(ValueError, match=word):
            load_dataset("digits", **kwargs)
    with pytest.raises(TypeError):
        load_dataset(42)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2), ["a"])


def _npz(tmp_path, x, y, **extra):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x, y_train=y, **extra)
    return path


def test_npz_data_that_would_silently_turn_into_garbage_is_refused_at_load(tmp_path):
    """NaN in float images, float labels that are not whole, a stray huge label, negative labels, booleans:
    each refused once at load with the offending index and value (not quantised, truncated or grown into)."""
    x = np.random.default_rng(0).random((6, 8, 8)).astype(np.float32)  # floats in [0, 1]
    y = np.array([0, 1, 2, 1, 0, 2])
    nan = x.copy()
    nan[3, 2, 5] = np.nan
    big = x * 255
    big[2, 0, 0] = 300.0
    cases = [(nan, y, r"image 3 holds nan at \(channel, row, col\) \(0, 2, 5\)"),
             (big, y, "image 2 holds 300.0"),
             (x, y + 0.7, "label 0 is 0.7, not a whole number"),
             (x, np.array([0, 1, 2, 1, 1_000_000, 2]), "label 4 is 1000000, which makes 1000001 classes"),
             (x, np.array([0, 1, -1, 1, 0, 2]), "label 2 is -1"),
             (x, y.astype(bool), "dtype bool")]
    for images, labels, match in cases:
        with pytest.raises(ValueError, match=match):
            load_dataset(_npz(tmp_path, images, labels))
    ok = load_dataset(_npz(tmp_path, x, y.astype(np.float64)))  # whole-number floats are class ids
    assert ok.labels.tolist() == y.tolist() and ok.num_classes == 3
    assert torch.equal(ok.images, torch.from_numpy(np.round(x * 255).astype(np.uint8))[:, None])
    named = load_dataset(_npz(tmp_path, x, np.array([0, 1, 2, 1, 9, 2]), classes=np.array(list("abcdefghij"))))
    assert named.num_classes == 10  # a `classes` array may name classes without images
    with pytest.raises(ValueError, match="label 4 is 9, outside the 3 classes"):
        load_dataset(_npz(tmp_path, x, np.array([0, 1, 2, 1, 9, 2]), classes=np.array(list("abc"))))


def test_image_dataset_checks_its_labels():
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(TypeError, match="integer tensor"):
        ImageDataset(images, torch.tensor([0.0, 1.0, 1.0]), ["a", "b"])
    with pytest.raises(ValueError, match="label 1 is -1"):
        ImageDataset(images, torch.tensor([0, -1, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="label 2 is 2, outside the 2 classes"):
        ImageDataset(images, torch.tensor([0, 1, 2]), ["a", "b"])


def test_dataset_helpers(tmp_path, monkeypatch):
    ds = load_dataset("digits", limit=10)
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 1, 32, 32) and y.dtype == torch.int64
    xb, yb = ds.get_batch([0, 1, 2, 3])
    assert torch.equal(xb, x) and torch.equal(yb, y)
    assert torch.equal(float_to_uint8(uint8_to_float(ds.images)), ds.images)  # exact round trip
    other = ImageDataset(ds.images.clone(), ds.labels.clone(), ds.classes)
    assert other.fingerprint == ds.fingerprint
    other.images[0, 0, 0, 0] += 1
    other._fingerprint = None
    assert other.fingerprint != ds.fingerprint
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DITLAB_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "ditlab"
    assert default_cache_dir(tmp_path) == tmp_path
    assert "ImageDataset(name='digits'" in repr(ds)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
