"""The RGB judge (issue 25): RGB data gets the small ResNet and its recipe, grayscale keeps the CNN, smoke judges stay
seconds-cheap; the augmentation is a translation + flip of each image; the real CIFAR-10 judge (slow, cached once)
is trusted by the verdict only if it clears JUDGE_MIN (measured: 87.2 % with the 800-step recipe; 83.5 % with 400, which was not)."""
import pytest
import torch

from conftest import CIFAR, needs_cifar
from ditlab.data import ImageDataset
from ditlab.eval.judge import Judge, get_judge, load_judge, train_judge
from ditlab.eval.judge_nets import RECIPES, SHIFT, augment, default_arch
from ditlab.eval.verdict import JUDGE_MIN, assess
from ditlab.io import uint8_to_float


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one BLAS/OpenMP thread for this module


def rgb_dataset(n=32, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 4, ["a", "b", "c", "d"], name="rgb")


def test_rgb_data_gets_the_resnet_and_grayscale_the_cnn(tmp_path):
    assert default_arch(3) == "resnet" and default_arch(1) == "cnn"
    judge = get_judge(rgb_dataset(), steps=2, batch_size=8, cache_dir=tmp_path, progress=False)
    assert judge.arch == "resnet" and judge.info["arch"] == "resnet" and judge.info["train_cpu_seconds"] >= 0
    x = uint8_to_float(rgb_dataset().images)
    assert judge.features(x).shape == (32, 128) and judge.predict(x).shape == (32,)
    loaded = load_judge(next((tmp_path / "judges").glob("*.safetensors")))
    assert loaded.arch == "resnet" and torch.equal(loaded.embed(x)[1], judge.embed(x)[1])
    gray = ImageDataset(torch.zeros(16, 1, 8, 8, dtype=torch.uint8), torch.arange(16) % 2, ["a", "b"], name="g")
    assert get_judge(gray, steps=2, batch_size=8, cache_dir=tmp_path, progress=False).arch == "cnn"
    assert get_judge(rgb_dataset(), steps=2, batch_size=8, arch="cnn", cache_dir=tmp_path, progress=False).arch == "cnn"
    with pytest.raises(ValueError, match="arch"):
        get_judge(rgb_dataset(), arch="vit", cache_dir=tmp_path)


def test_resnet_judge_features_average_the_image_and_its_mirror():
    """Natural images look alike mirrored: the ResNet judge's features (and so its class) are flip-invariant."""
    judge = train_judge(rgb_dataset(), steps=2, batch_size=8, progress=False)
    x = uint8_to_float(rgb_dataset().images)
    assert torch.allclose(judge.features(x), judge.features(x.flip(-1)), atol=1e-5)
    assert Judge(3, 8, 10, arch="resnet").features(torch.zeros(2, 3, 8, 8)).shape == (2, 128)  # the smallest size


def test_smoke_judges_are_the_cnn_whatever_the_channels(tmp_path):
    judge = get_judge(rgb_dataset(), smoke=True, cache_dir=tmp_path, progress=False)
    assert judge.arch == "cnn" and judge.info["steps"] == 20


def test_augment_translates_and_flips_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 12, 12, generator=g) * 2 - 1
    out = augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and torch.equal(augment(x, torch.Generator().manual_seed(1)), out)  # seeded
    assert not torch.equal(out, x)
    centre = slice(SHIFT, 12 - SHIFT)
    for i in range(64):  # every output is the input shifted by <= SHIFT px, maybe mirrored: find it
        padded = torch.nn.functional.pad(x[i:i + 1], (SHIFT,) * 4, mode="reflect")[0]
        views = [padded[:, dy:dy + 12, dx:dx + 12] for dy in range(2 * SHIFT + 1) for dx in range(2 * SHIFT + 1)]
        assert any(torch.equal(out[i], v) or torch.equal(out[i], v.flip(-1)) for v in views), i
        assert out[i][:, centre, centre].abs().sum() > 0
    flipped = sum(torch.equal(out[i], x[i].flip(-1)) for i in range(64))
    same = sum(torch.equal(out[i], x[i]) for i in range(64))
    assert flipped + same < 64  # most images also moved


@pytest.mark.slow
@needs_cifar
def test_cifar10_judge_is_far_better_than_the_cnn_and_the_verdict_trusts_it_only_above_judge_min():
    """The default CIFAR-10 judge (the ResNet recipe; trained once into the user's cache, ~75 CPU-min): 87.2 % measured
    on 2026-12-07 (400 steps: 83.5 %; the CNN: 66 %); below JUDGE_MIN the verdict calls it weak."""
    judge = get_judge(str(CIFAR), progress=False)
    assert judge.arch == "resnet" and judge.info["steps"] == RECIPES["resnet"]["steps"] and judge.info["n_test"] == 10_000
    assert judge.info["test_accuracy"] >= JUDGE_MIN, judge.info
    status, hint = assess(0.95, 0.1, judge.info["test_accuracy"], 0.0, 1500, "DiT-Mi/4", unguided=0.9)
    assert (status == "good") == (judge.info["test_accuracy"] >= JUDGE_MIN), (status, hint)
