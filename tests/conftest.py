"""Shared pytest fixtures: offline mode, paths to the committed fixtures and ../shared, the official tiny DiT."""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # beside a developer's checkout: real data (MNIST, CIFAR-10); absent in a user's clone
FIXTURES = ROOT / "tests" / "fixtures" / "official_dit"  # committed: the official DiT code's outputs
SIT_FIXTURES = ROOT / "tests" / "fixtures" / "official_sit"  # committed: the official SiT code's outputs


@pytest.fixture(scope="session")
def reference():
    """Outputs of the official DiT code on the tiny config (see tests/fixtures/README.md)."""
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "reference.safetensors"))


@pytest.fixture(scope="session")
def official_model():
    """The tiny DiT with the official fixture weights, eval mode, float32."""
    from ditlab.checkpoint import load_model

    return load_model(FIXTURES / "DiT-tiny-release.pt").eval()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
