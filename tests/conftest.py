"""Shared pytest fixtures: offline mode, paths to the committed fixtures and ../shared, the official tiny DiT, the
wheel of this checkout (built once per session, offline) and a folder it is installed in."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from ditlab.io import fixture_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # beside a developer's checkout: real data (MNIST, CIFAR-10); absent in a user's clone
MNIST = SHARED / "data" / "mnist.npz"
CIFAR = SHARED / "data" / "cifar10.zip"
FIXTURES = fixture_path("official_dit/config.json").parent  # shipped: the official DiT code's outputs
SIT_FIXTURES = fixture_path("official_sit/config.json").parent  # shipped: the official SiT code's outputs


def _needs(path: Path):
    """Skip (with the file named) where the optional real data is absent, e.g. in a fresh clone."""
    return pytest.mark.skipif(not path.exists(), reason=f"needs {path.relative_to(ROOT.parent)} beside the checkout "
                                                        "(real data, not in the repository)")


needs_mnist = _needs(MNIST)
needs_cifar = _needs(CIFAR)


def load_script(path: Path):
    """A script of the repository (e.g. notebooks/regenerate.py) as a module, to test its functions."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def reference():
    """Outputs of the official DiT code on the tiny config (see data/fixtures/README.md)."""
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "reference.safetensors"))


@pytest.fixture(scope="session")
def official_model():
    """The tiny DiT with the official fixture weights, eval mode, float32."""
    from ditlab.checkpoint import load_model

    return load_model(FIXTURES / "DiT-tiny-release.pt").eval()


# what a build reads is pyproject.toml, setup.py, README.md, ditlab/ and data/: leave the rest behind
SKIP = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "_data", "runs", "notebooks",
                              "tests", "benchmarks", "site")


def pip(*args, **kwargs):
    done = subprocess.run([sys.executable, "-m", "pip", *map(str, args)], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"pip {' '.join(map(str, args))}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    """The wheel `pip install git+...` would build from this checkout (no build isolation, no index)."""
    src = tmp_path_factory.mktemp("source") / "ditlab"
    shutil.copytree(ROOT, src, ignore=SKIP)
    out = tmp_path_factory.mktemp("wheelhouse")
    pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, src)
    (whl,) = out.glob("ditlab-*.whl")
    return whl


@pytest.fixture(scope="session")
def wheel_site(wheel, tmp_path_factory):
    """A folder with the wheel installed (no dependencies): PYTHONPATH=wheel_site imports it, not the checkout."""
    site = tmp_path_factory.mktemp("site")
    pip("install", "--quiet", "--no-deps", "--no-index", "--target", site, wheel)
    return site


@pytest.fixture(scope="module")
def one_thread():
    """One BLAS/OpenMP thread for a whole module (`pytestmark = pytest.mark.usefixtures("one_thread")`): on a shared
    2-core machine two threads per process thrash (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    """DITLAB_TESTS=beside-the-checkout (.ci/run's first part) keeps only the tests that read ../shared (real data,
    the README's commands on it) or need a browser: the fresh clone's run (the second part) runs everything else."""
    if os.environ.get("DITLAB_TESTS") != "beside-the-checkout":
        return
    def wanted(item):
        reasons = [m.kwargs.get("reason", "") for m in item.iter_markers("skipif")]
        return any("beside the checkout" in r for r in reasons) or item.path.name in ("test_readme.py",
                                                                                         "test_browser.py")
    keep = [i for i in items if wanted(i)]
    config.hook.pytest_deselected(items=[i for i in items if not wanted(i)])
    items[:] = keep
