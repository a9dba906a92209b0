"""The judge (classifier trained on real data), conditional accuracy, Fréchet distance, Inception FID, .npz export."""
import math
import sys
import types

import numpy as np
import pytest
import torch

from conftest import MNIST, needs_mnist
from ditlab.data import ImageDataset, load_dataset
from ditlab.eval import judge as judge_module
from ditlab.eval.judge import check_images, get_judge, load_judge, train_judge
from ditlab.eval.metrics import (conditional_accuracy, evaluate, feature_stats, frechet_distance,
                                 frechet_distance_from_stats, gaussian_stats, inception_fid, judge_fd, load_npz_samples,
                                 save_npz_samples)
from ditlab.io import uint8_to_float

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one BLAS/OpenMP thread for this module


@pytest.fixture(scope="module")
def mnist():
    """5k train images (seeded subset) and 2k held-out test images, 28 px."""
    return load_dataset(MNIST, "train", limit=5000), load_dataset(MNIST, "test", limit=2000)


@pytest.fixture(scope="module")
def fast_judge(mnist, tmp_path_factory):
    """A judge trained for only 60 steps (~3 s): enough for > 90 % on MNIST."""
    train, test = mnist
    return get_judge(train, test_dataset=test, steps=60, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def tiny_dataset(n=64, size=16, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 4, ["a", "b", "c", "d"], name="tiny")


# ---------------------------------------------------------------------------------------------- Fréchet distance

def gaussian(n, mu, std, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(mu), generator=g, dtype=torch.float64) * torch.tensor(std) + torch.tensor(mu)


def closed_form(mu1, var1, mu2, var2):
    """FD of diagonal Gaussians: ||Δμ||² + Σ (σ1² + σ2² - 2 σ1 σ2)."""
    return sum((a - b) ** 2 for a, b in zip(mu1, mu2)) + sum(v1 + v2 - 2 * math.sqrt(v1 * v2)
                                                             for v1, v2 in zip(var1, var2))


def test_fd_identical_sets_is_zero():
    x = gaussian(500, [0.0] * 16, [1.0] * 16, seed=0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x.numpy(), x.float()) == pytest.approx(0.0, abs=1e-4)  # numpy and float32 accepted


def test_fd_closed_form_diagonal_gaussians():
    mu1, var1, mu2, var2 = [0.0, 1.0, -2.0], [1.0, 4.0, 0.25], [0.5, -1.0, 0.0], [2.0, 1.0, 1.0]
    want = closed_form(mu1, var1, mu2, var2)
    exact = frechet_distance_from_stats(torch.tensor(mu1), torch.diag(torch.tensor(var1)),
                                        np.array(mu2), np.diag(var2))
    assert exact == pytest.approx(want, rel=1e-12)
    a = gaussian(200_000, mu1, [math.sqrt(v) for v in var1], seed=1)
    b = gaussian(200_000, mu2, [math.sqrt(v) for v in var2], seed=2)
    assert frechet_distance(a, b) == pytest.approx(want, rel=0.02)  # sample estimate of the same value


def test_fd_full_covariance_matches_eigenvalues_of_product():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 8, generator=g, dtype=torch.float64), torch.randn(8, 8, generator=g, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(8), b @ b.T + 0.1 * torch.eye(8)
    mu1, mu2 = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    # independent reference: Tr (Σ1 Σ2)^½ = Σ sqrt(eigenvalues of the non-symmetric Σ1 Σ2) (all real, > 0)
    tr_sqrt = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0).sqrt().sum()
    want = ((mu1 - mu2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_sqrt).item()
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)
    assert frechet_distance_from_stats(mu2, s2, mu1, s1) == pytest.approx(want, rel=1e-9)
    assert frechet_distance_from_stats(mu1, s1, mu2, s1) == pytest.approx((mu1 - mu2).square().sum().item())


def test_fd_symmetric_and_shift_invariant():
    a, b = gaussian(300, [0.0] * 10, [1.0] * 10, seed=3), gaussian(200, [0.3] * 10, [2.0] * 10, seed=4) @ \
        torch.randn(10, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    fd = frechet_distance(a, b)
    assert fd > 1
    assert frechet_distance(b, a) == pytest.approx(fd, rel=1e-9)
    assert frechet_distance(a + 7.0, b + 7.0) == pytest.approx(fd, rel=1e-9)


def test_fd_rank_deficient_covariances():
    """Fewer samples than dimensions (singular Σ) still gives a finite, non-negative value."""
    a, b = gaussian(5, [0.0] * 32, [1.0] * 32, seed=6), gaussian(7, [0.0] * 32, [1.0] * 32, seed=7)
    assert 0 < frechet_distance(a, b) < 1e3
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_fd_bad_input():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(x[:1], x)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(x[:, 0], x)  # 1-D
    with pytest.raises(ValueError, match="dims differ"):
        frechet_distance(x, torch.randn(10, 5))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(x, torch.full((10, 4), float("nan")))
    with pytest.raises(ValueError, match="mu"):
        frechet_distance_from_stats(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))
    mu, sigma = gaussian_stats(x)
    assert mu.dtype == torch.float64 and sigma.shape == (4, 4)
    assert torch.allclose(sigma, torch.from_numpy(np.cov(x.double().numpy(), rowvar=False)))


# ---------------------------------------------------------------------------------------------- the judge

@needs_mnist
def test_fast_judge_classifies_held_out_mnist(fast_judge, mnist):
    _, test = mnist
    acc = conditional_accuracy(fast_judge, uint8_to_float(test.images), test.labels)
    assert acc > 0.90, acc
    assert fast_judge.info["test_accuracy"] == pytest.approx(acc)
    assert fast_judge.info["n_train"] == 5000 and fast_judge.info["steps"] == 60
    assert (fast_judge.channels, fast_judge.image_size, fast_judge.num_classes) == (1, 28, 10)
    assert fast_judge.features(uint8_to_float(test.images[:3])).shape == (3, 128)


@pytest.mark.slow
@needs_mnist
def test_judge_reaches_97_percent_on_mnist(mnist, tmp_path):
    train, test = mnist
    judge = get_judge(train, steps=240, cache_dir=tmp_path, progress=False)
    assert conditional_accuracy(judge, uint8_to_float(test.images), test.labels) >= 0.97


@pytest.mark.slow
def test_default_digits_judge_reaches_98_percent(tmp_path):
    """The recipe used by training and the demo: 400 steps on the built-in digits (≤ 60 s on 2 idle cores)."""
    judge = get_judge("digits", cache_dir=tmp_path, progress=False)
    assert judge.info["test_accuracy"] >= 0.98 and judge.info["n_test"] == 2000


@needs_mnist
def test_get_judge_by_path_smoke(tmp_path):
    """A name/path loads the train split, scores on the test split; smoke=True is 20 steps on 2048 images."""
    judge = get_judge(str(MNIST), smoke=True, cache_dir=tmp_path, progress=False)
    assert judge.info["steps"] == 20 and judge.info["n_train"] == 2048 and judge.info["n_test"] == 10_000
    assert judge.info["dataset"] == "mnist" and 0.5 < judge.info["test_accuracy"] < 1
    assert (tmp_path / "judges").is_dir()


@needs_mnist
def test_conditional_accuracy_real_vs_shuffled_labels(fast_judge, mnist):
    _, test = mnist
    x = uint8_to_float(test.images)
    assert conditional_accuracy(fast_judge, x, test.labels) > 0.9
    shuffled = test.labels[torch.randperm(len(test.labels), generator=torch.Generator().manual_seed(0))]
    assert 0.05 < conditional_accuracy(fast_judge, x, shuffled) < 0.16  # chance level: 10 classes
    assert conditional_accuracy(fast_judge, x, (test.labels + 1) % 10) < 0.05  # every label wrong


@needs_mnist
def test_judge_fd_real_vs_real_much_smaller_than_noise_or_collapse(fast_judge, mnist):
    _, test = mnist
    x = uint8_to_float(test.images)
    a, b = x[:1000], x[1000:]
    real_real = judge_fd(fast_judge, a, b)
    noise = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real_noise = judge_fd(fast_judge, noise, b)
    ones = x[test.labels == 1]  # mode collapse: one class only
    assert real_real * 50 < real_noise
    assert real_real * 20 < judge_fd(fast_judge, ones, b)
    assert judge_fd(fast_judge, a, feature_stats(fast_judge, b)) == pytest.approx(real_real, rel=1e-9)


@needs_mnist
def test_evaluate(fast_judge, mnist):
    _, test = mnist
    x, y = uint8_to_float(test.images), test.labels
    out = evaluate(fast_judge, x[:500], y[:500], x[500:])
    assert set(out) == {"accuracy", "fd", "n"} and out["n"] == 500
    assert out["accuracy"] == pytest.approx(conditional_accuracy(fast_judge, x[:500], y[:500]))
    assert out["fd"] == pytest.approx(judge_fd(fast_judge, x[:500], x[500:]), rel=1e-6)
    assert evaluate(fast_judge, x[:500], y[:500].tolist(), feature_stats(fast_judge, x[500:]))["fd"] == \
        pytest.approx(out["fd"], rel=1e-6)
    assert evaluate(fast_judge, x[:10], y[:10])["fd"] is None


def test_get_judge_caches_and_does_not_retrain(tmp_path, monkeypatch):
    calls = []
    real_train = judge_module.train_judge

    def counting_train(*args, **kwargs):
        calls.append(kwargs.get("steps"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(judge_module, "train_judge", counting_train)
    ds = tiny_dataset()
    j1 = get_judge(ds, steps=3, batch_size=16, cache_dir=tmp_path, progress=False)
    j2 = get_judge(ds, steps=3, batch_size=16, cache_dir=tmp_path, progress=False)
    assert calls == [3]  # second call loaded from disk
    x = uint8_to_float(ds.images)
    assert torch.equal(j1.features(x), j2.features(x)) and j2.classes == ["a", "b", "c", "d"]
    files = sorted(p.name for p in (tmp_path / "judges").iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors")  # no temp files left
    assert files[0].startswith("tiny-1x16x16-v2-")
    # the key covers the recipe and the data: other steps or other images train a new judge
    get_judge(ds, steps=4, batch_size=16, cache_dir=tmp_path, progress=False)
    get_judge(tiny_dataset(seed=1), steps=3, batch_size=16, cache_dir=tmp_path, progress=False)
    get_judge(ds, steps=3, batch_size=16, cache_dir=tmp_path, progress=False, retrain=True)
    assert calls == [3, 4, 3, 3]
    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path))  # the env var is the default cache dir
    get_judge(ds, steps=3, batch_size=16, progress=False)
    assert len(calls) == 4


def test_judge_save_load_roundtrip_and_rgb(tmp_path):
    ds = tiny_dataset(channels=3, size=12)
    judge = train_judge(ds, steps=2, batch_size=8, progress=False)
    path = judge_module.save_judge(judge, tmp_path / "j.safetensors")
    loaded = load_judge(path)
    x = uint8_to_float(ds.images)
    assert torch.equal(judge.embed(x)[1], loaded.embed(x)[1]) and not loaded.training
    assert (tmp_path / "j.json").exists()
    with pytest.raises(ValueError, match="not a ditlab judge"):
        from ditlab.io import save_tensors
        save_tensors(tmp_path / "other.safetensors", {"w": torch.zeros(1)})
        load_judge(tmp_path / "other.safetensors")


def test_judge_input_errors():
    judge = judge_module.Judge(channels=1, image_size=16, num_classes=4)
    x = torch.zeros(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"\(N, 1, 16, 16\)"):
        judge.features(torch.zeros(2, 3, 16, 16))  # wrong channels
    with pytest.raises(ValueError, match="image_size=16"):
        judge.features(torch.zeros(2, 1, 32, 32))  # wrong size
    with pytest.raises(ValueError, match="uint8_to_float"):
        judge.features(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        judge.features(x + 255)  # pixels in [0, 255]
    with pytest.raises(TypeError, match="images must be"):
        judge.features([[0.0]])
    with pytest.raises(ValueError, match="shape"):
        conditional_accuracy(judge, x, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        conditional_accuracy(judge, x, torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="integer"):
        conditional_accuracy(judge, x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="channels"):
        judge_module.Judge(channels=2)
    with pytest.raises(ValueError, match="image_size"):
        judge_module.Judge(image_size=4)
    assert torch.equal(check_images(judge, x + 1.2), x + 1)  # slightly out of range: clamped like a saved image


def test_get_judge_argument_errors(tmp_path):
    ds = tiny_dataset()
    with pytest.raises(TypeError, match="dataset must be"):
        get_judge(123)
    with pytest.raises(ValueError, match="steps"):
        get_judge(ds, steps=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="image_size=32"):
        get_judge(ds, image_size=32, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="channels=3"):
        get_judge(ds, channels=3, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        get_judge("no-such-dataset", cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------- Inception FID

def test_inception_fid_without_torch_fidelity_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # makes `import torch_fidelity` fail
    with pytest.raises(ImportError, match=r"pip install 'ditlab\[fid\]'"):
        inception_fid(torch.zeros(4, 1, 32, 32), torch.zeros(4, 1, 32, 32))


def test_inception_fid_offline_names_the_weights(monkeypatch, tmp_path):
    from urllib.error import URLError

    def calculate_metrics(input1, input2, **kwargs):
        assert input1[0].dtype == torch.uint8 and input1[0].shape == (3, 8, 8) and len(input2) == 5
        raise URLError("no network")

    monkeypatch.setitem(sys.modules, "torch_fidelity", types.SimpleNamespace(calculate_metrics=calculate_metrics))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="weights-inception-2015-12-05-6726825d.pth"):
        inception_fid(torch.zeros(4, 1, 8, 8), torch.zeros(5, 3, 8, 8, dtype=torch.uint8))


def test_inception_fid_passes_uint8_rgb_datasets(monkeypatch):
    seen = {}

    def calculate_metrics(input1, input2, fid, **kwargs):
        seen.update(a=torch.stack([input1[i] for i in range(len(input1))]), b=input2[0], fid=fid)
        return {"frechet_inception_distance": 12.5}

    monkeypatch.setitem(sys.modules, "torch_fidelity", types.SimpleNamespace(calculate_metrics=calculate_metrics))
    x = torch.linspace(-1, 1, 2 * 4 * 4).view(2, 1, 4, 4)
    assert inception_fid(x, x) == 12.5 and seen["fid"]
    assert seen["a"].dtype == torch.uint8 and seen["a"].shape == (2, 3, 4, 4)
    assert seen["a"][:, 0].min() == 0 and seen["a"][:, 2].max() == 255 and torch.equal(seen["a"][:, 0], seen["a"][:, 1])
    with pytest.raises(ValueError, match="C in"):
        inception_fid(torch.zeros(2, 2, 4, 4), x)


# ---------------------------------------------------------------------------------------------- .npz export

def test_npz_roundtrip_grayscale(tmp_path):
    u8 = torch.randint(0, 256, (6, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    x = uint8_to_float(u8)
    path = save_npz_samples(tmp_path / "samples.npz", x, labels=torch.arange(6))
    with np.load(path) as f:  # what the ADM evaluator reads
        assert f["arr_0"].dtype == np.uint8 and f["arr_0"].shape == (6, 8, 8, 3)
        assert np.array_equal(f["arr_0"][..., 0], u8[:, 0].numpy()) and np.array_equal(f["arr_0"][..., 2],
                                                                                       u8[:, 0].numpy())
        assert f["arr_1"].tolist() == list(range(6))
    images, labels = load_npz_samples(path, channels=1)
    assert torch.equal(images, x) and labels.tolist() == list(range(6))
    rgb, _ = load_npz_samples(path)
    assert rgb.shape == (6, 3, 8, 8) and torch.equal(rgb[:, 2:], x)
    assert [p.name for p in tmp_path.iterdir()] == ["samples.npz"]  # atomic: no temp file left


def test_npz_roundtrip_rgb_uint8_and_clamping(tmp_path):
    u8 = torch.randint(0, 256, (3, 3, 5, 7), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    save_npz_samples(tmp_path / "a.npz", u8)
    images, labels = load_npz_samples(tmp_path / "a.npz")
    assert labels is None and torch.equal(images, uint8_to_float(u8))
    save_npz_samples(tmp_path / "b.npz", torch.tensor([-3.0, 3.0]).view(1, 1, 1, 2))  # out of range: clamped
    assert np.load(tmp_path / "b.npz")["arr_0"][0, 0, :, 0].tolist() == [0, 255]


def test_npz_bad_input(tmp_path):
    with pytest.raises(ValueError, match=".npz"):
        save_npz_samples(tmp_path / "a.png", torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="C in"):
        save_npz_samples(tmp_path / "a.npz", torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="labels"):
        save_npz_samples(tmp_path / "a.npz", torch.zeros(2, 1, 4, 4), labels=[0])
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="arr_0"):
        load_npz_samples(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="channels"):
        load_npz_samples(tmp_path / "other.npz", channels=2)
    assert not (tmp_path / "a.npz").exists()
