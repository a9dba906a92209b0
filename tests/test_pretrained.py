"""Released checkpoints (download, cache, corruption, offline message), ImageNet names, paper settings, VAE."""
import json
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES

from ditlab.data import imagenet
from ditlab.data.imagenet import imagenet_class_index, imagenet_classes, imagenet_labels, imagenet_names
from ditlab.checkpoint import Release, download_released, released
from ditlab.hub.pretrained import load_released, load_sd_vae, paper_settings, sample_imagenet
from ditlab.model import DiT, DiTConfig, get_config

TINY = DiTConfig(**json.loads((FIXTURES / "config.json").read_text()))
RELEASE_FILE = FIXTURES / "DiT-tiny-release.pt"


# ---- ImageNet names ----------------------------------------------------------------------------------
def test_imagenet_class_names():
    classes, names = imagenet_classes(), imagenet_names()
    assert len(classes) == len(names) == 1000
    assert classes[0] == "tench" and classes[207] == "golden retriever" and classes[999] == "toilet tissue"
    assert names[2][:2] == ["great white shark", "white shark"]
    assert imagenet_class_index("Golden Retriever") == 207
    assert imagenet_class_index("  golden_retriever ") == 207
    assert imagenet_class_index("white shark") == imagenet_class_index("man-eater") == 2  # synonyms
    assert imagenet_class_index("n01440764") == 0 and imagenet_class_index(980) == 980  # WordNet id, index
    assert imagenet_labels(["volcano", "tench", 3]) == [980, 0, 3] and imagenet_labels("volcano") == [980]
    with pytest.raises(ValueError, match=r"ambiguous: 134 .*517"):  # the bird and the machine
        imagenet_class_index("crane")
    with pytest.raises(ValueError, match="golden retriever"):
        imagenet_class_index("golden retreiver")
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        imagenet_class_index(1000)
    with pytest.raises(TypeError):
        imagenet_class_index(2.0)


def test_imagenet_table_records_its_source():
    data = json.loads((Path(imagenet.__file__).with_name("imagenet_classes.json")).read_text())
    assert "timm" in data["source"] and "WordNet" in data["source"]
    wnids = [w for w, _ in data["classes"]]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000  # ILSVRC-2012 order = sorted synset ids


def test_paper_settings():
    assert paper_settings("fid") == dict(sampler="ddpm", steps=250, cfg_scale=1.5, guidance_channels=3)
    assert paper_settings("picture")["cfg_scale"] == 4.0
    with pytest.raises(ValueError, match="purpose"):
        paper_settings("fun")


# ---- released checkpoints ----------------------------------------------------------------------------
@pytest.fixture
def tiny_release(monkeypatch):
    """A released-checkpoint entry for the official tiny fixture, downloaded over file:// by the real downloader."""
    monkeypatch.setitem(released.RELEASED, "DiT-tiny", Release(RELEASE_FILE.as_uri(), TINY))
    calls = []
    real = released._download
    monkeypatch.setattr(released, "_download", lambda url, dest, **kw: calls.append(dest) or real(url, dest, **kw))
    return calls


def _check_model(model, reference):
    assert isinstance(model, DiT) and not model.training and model.config == TINY
    with torch.no_grad():
        out = model(reference["x"], reference["t"], reference["y"])
    assert torch.allclose(out, reference["out"], rtol=1e-5, atol=1e-5)


def test_load_released_downloads_once_and_replaces_corrupt_files(tiny_release, tmp_path, reference):
    cache = tmp_path / "cache"
    _check_model(load_released("DiT-tiny", cache_dir=cache), reference)
    path = cache / "DiT-tiny.pt"
    info = json.loads((cache / "DiT-tiny.pt.json").read_text())
    assert info["size"] == RELEASE_FILE.stat().st_size == path.stat().st_size and len(info["sha256"]) == 64
    assert sorted(p.name for p in cache.iterdir()) == ["DiT-tiny.pt", "DiT-tiny.pt.json"]  # no temp files left
    _check_model(load_released("DiT-tiny", cache_dir=cache), reference)
    assert len(tiny_release) == 1  # cached

    path.write_bytes(RELEASE_FILE.read_bytes()[:5000])  # an interrupted copy: the size gives it away
    _check_model(load_released("DiT-tiny", cache_dir=cache), reference)
    assert len(tiny_release) == 2 and path.stat().st_size == info["size"]

    (cache / "DiT-tiny.pt.json").unlink()  # no record of the size: the failed safe load gives it away
    path.write_bytes(RELEASE_FILE.read_bytes()[:5000])
    with pytest.warns(UserWarning, match="downloading it again"):
        _check_model(load_released("DiT-tiny", cache_dir=cache), reference)
    assert len(tiny_release) == 3


def test_known_sha256_is_enforced(monkeypatch, tmp_path):
    monkeypatch.setitem(released.RELEASED, "DiT-tiny", Release(RELEASE_FILE.as_uri(), TINY, sha256="0" * 64))
    with pytest.raises(ValueError, match="sha256"):
        download_released("DiT-tiny", cache_dir=tmp_path)
    assert not (tmp_path / "DiT-tiny.pt").exists()


def test_interrupted_download_leaves_no_file(monkeypatch, tmp_path):
    class Response:  # the server promises 10 bytes and sends 4
        headers = {"Content-Length": "10"}

        def __init__(self):
            self.chunks = [b"abcd", b""]

        def read(self, n):
            return self.chunks.pop(0)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(released.urllib.request, "urlopen", lambda url, timeout: Response())
    with pytest.raises(ConnectionError, match="4 of 10 bytes"):
        released._download("https://example.invalid/x.pt", tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_offline_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(released.socket, "create_connection", lambda *a, **k: pytest.fail("tried to connect"))
    with pytest.raises(ConnectionError) as e:  # at once: no connection is tried
        load_released("DiT-XL-2-256x256", cache_dir=tmp_path)
    msg = str(e.value)
    assert "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt" in msg
    assert str(tmp_path / "DiT-XL-2-256x256.pt") in msg and "load_released('/path/to/" in msg


def test_load_released_checks_shapes_and_names(monkeypatch, tmp_path):
    monkeypatch.setitem(released.RELEASED, "DiT-tiny", Release(RELEASE_FILE.as_uri(), TINY.replace(depth=3)))
    with pytest.raises(ValueError, match=r"missing tensors: \['blocks\.2\."):
        load_released("DiT-tiny", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="DiT-XL-2-256x256"):
        load_released("DiT-XL-2-1024x1024")
    with pytest.raises(ValueError, match="DiT-XL-2-512x512"):
        download_released("DiT-XL-2-1024x1024")


def test_load_released_from_a_path(reference):
    _check_model(load_released(RELEASE_FILE), reference)  # config.json beside the file


def test_released_configs_are_the_papers():
    for name, side in (("DiT-XL-2-256x256", 32), ("DiT-XL-2-512x512", 64)):
        c = released.RELEASED[name].config
        assert c == get_config("DiT-XL/2", input_size=side)
        assert c.num_classes == 1000 and c.learn_sigma and c.depth == 28 and c.hidden_size == 1152


# ---- VAE and ImageNet sampling --------------------------------------------------------------------
def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                         layers_per_block=1, sample_size=16).eval()


def test_load_sd_vae_offline_message_and_local_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        load_sd_vae("mse")
        pytest.skip("stabilityai/sd-vae-ft-mse is in the local Hugging Face cache")
    except ConnectionError as e:
        assert "sd-vae-ft" in str(e) and "download" in str(e).lower()
    vae = tiny_vae()
    vae.save_pretrained(tmp_path / "vae")
    loaded = load_sd_vae(tmp_path / "vae")
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(ValueError, match="ema"):
        load_sd_vae("fancy")


def test_sample_imagenet_decodes_latents_with_the_sd_scale():
    from ditlab.sampling import Guidance, sample

    torch.manual_seed(0)
    model = DiT(TINY.replace(num_classes=1000))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    vae = tiny_vae()
    kw = dict(steps=4, sampler="ddim", seed=1)
    out = sample_imagenet(model.eval(), vae, ["golden retriever", "tench"], **kw)
    assert out.images.shape == (2, 3, 16, 16) and out.labels.tolist() == [207, 0]
    with torch.no_grad():
        expect = vae.decode(out.latents / 0.18215).sample.clamp(-1, 1)
    assert torch.allclose(out.images, expect, atol=1e-5)
    paper = sample(model, [207, 0], vae=vae, cfg_scale=Guidance(4.0, channels=3), progress=False, **kw)
    assert torch.equal(out.latents, paper.latents)  # the "picture" settings: cfg 4.0 on 3 channels
    with pytest.raises(ValueError, match="1000-class"):
        sample_imagenet(DiT(TINY), vae, ["tench"])


@pytest.mark.gpu
def test_real_released_checkpoint():
    """With the real DiT-XL/2 256 checkpoint in the cache: parameter count (paper: 675M) and exact diffusers
    conversion on the GPU, plus the stock-diffusers deviation."""
    from ditlab.hub.interop import to_diffusers

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    path = released.release_cache_dir() / "DiT-XL-2-256x256.pt"
    if not path.exists():
        pytest.skip(f"put DiT-XL-2-256x256.pt at {path}")
    model = load_released("DiT-XL-2-256x256", device="cuda")
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 675) < 1
    g = torch.Generator("cuda").manual_seed(0)
    x = torch.randn(4, 4, 32, 32, generator=g, device="cuda")
    t, y = torch.tensor([0, 100, 500, 999], device="cuda"), torch.tensor([207, 360, 387, 1000], device="cuda")
    with torch.no_grad():
        ours = model(x, t, y)
        exact = to_diffusers(model)(x, t, y).sample
        stock = to_diffusers(model, exact=False)(x, t, y).sample
    assert torch.allclose(ours, exact, atol=1e-3)
    assert float((stock - ours).norm() / ours.norm()) > 1e-3
