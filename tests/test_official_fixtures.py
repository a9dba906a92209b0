"""ditlab reproduces the official DiT code's outputs on the tiny fixture config (float32, CPU)."""
import json
import math
import pickle

import pytest
import torch
from conftest import FIXTURES

from ditlab import DiT, DiTConfig, load_model, sincos_2d
from ditlab.checkpoint import safe_torch_load
from ditlab.io import fixture_path
from ditlab.model import timestep_embedding


def test_forward_matches_official(official_model, reference):
    with torch.no_grad():
        out = official_model(reference["x"], reference["t"], reference["y"])
    assert out.shape == reference["out"].shape
    assert (out - reference["out"]).abs().max() <= 1e-5


def test_cfg_forward_matches_official_three_channel_guidance(official_model, reference):
    with torch.no_grad():
        out = official_model.forward_with_cfg(reference["cfg_x"], reference["cfg_t"], reference["cfg_y"],
                                              cfg_scale=4.0, guidance_channels=3)
    assert (out - reference["cfg_out"]).abs().max() <= 1e-5


def test_standard_cfg_guides_all_channels(official_model, reference):
    x, t, y = reference["cfg_x"], reference["cfg_t"], reference["cfg_y"]
    with torch.no_grad():
        raw = official_model(torch.cat([x[:2], x[:2]]), t, y)
        out = official_model.forward_with_cfg(x, t, y, cfg_scale=4.0)
    cond, uncond = raw[:2, :4], raw[2:, :4]
    expected = uncond + 4.0 * (cond - uncond)
    torch.testing.assert_close(out[:2, :4], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2:, :4], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 4:], raw[:, 4:])  # learned Σ is never guided
    # official 3-channel guidance leaves channel 3 per-half: the two differ exactly there
    official = official_model.forward_with_cfg(x, t, y, cfg_scale=4.0, guidance_channels=3)
    assert torch.equal(official[:, :3], out[:, :3]) and not torch.allclose(official[:, 3], out[:, 3])


@pytest.mark.parametrize("dim,grid", [(64, 4), (96, 6)])
def test_pos_embed_matches_official(reference, dim, grid):
    assert (sincos_2d(dim, grid) - reference[f"pos_embed_{dim}_{grid}"]).abs().max() <= 1e-6


def test_timestep_embedding_matches_official(reference):
    ours = timestep_embedding(reference["temb_t"], 256)
    err = (ours - reference["temb_256"]).abs()
    # Everywhere ≤ 1e-5, except where the float32 argument t·ω exceeds 256: there one ulp of the argument
    # (≥ 3e-5) is already larger than the tolerance, and the fixture's exp() rounded two frequencies the
    # other way (t = 999, k = 12, 13). Compare those entries at the argument's own float32 resolution.
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    arg = (reference["temb_t"][:, None] * freqs[None]).repeat(1, 2)
    ulp = torch.finfo(torch.float32).eps * arg.abs().clamp(min=1)
    assert err[arg.abs() < 256].max() <= 1e-5
    assert (err <= torch.maximum(ulp, torch.full_like(ulp, 1e-5))).all()
    assert (err > 1e-5).sum() <= 3


def test_release_and_train_formats_load_without_conversion(reference):
    release = load_model(FIXTURES / "DiT-tiny-release.pt")
    train = load_model(FIXTURES / "DiT-tiny-train-0000001.pt")
    cfg = json.loads((FIXTURES / "config.json").read_text())
    assert release.config == DiTConfig.from_dict(cfg) == train.config
    ckpt = safe_torch_load(FIXTURES / "DiT-tiny-train-0000001.pt")
    assert set(ckpt) == {"model", "ema", "opt", "args"} and ckpt["args"].model == "DiT-tiny"
    for k, v in train.state_dict().items():  # the train format loads its EMA weights
        assert torch.equal(v, ckpt["ema"][k]), k


def test_train_checkpoint_is_one_adamw_step_from_the_reference(reference):
    """Undo the optimizer step stored in the official train checkpoint: we recover the reference model."""
    ckpt = safe_torch_load(FIXTURES / "DiT-tiny-train-0000001.pt")
    names = list(ckpt["model"])  # official parameter order; index 0 (pos_embed) is frozen
    group = ckpt["opt"]["param_groups"][0]
    lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
    sd = dict(ckpt["model"])
    for i, state in ckpt["opt"]["state"].items():
        step = float(state["step"])
        m_hat = state["exp_avg"] / (1 - b1**step)
        v_hat = state["exp_avg_sq"] / (1 - b2**step)
        sd[names[i]] = sd[names[i]] + lr * m_hat / (v_hat.sqrt() + eps)
    model = DiT(DiTConfig.from_dict(json.loads((FIXTURES / "config.json").read_text())))
    model.load_state_dict(sd)
    with torch.no_grad():
        out = model.eval()(reference["x"], reference["t"], reference["y"])
    assert (out - reference["out"]).abs().max() <= 1e-4


class _Evil:
    def __reduce__(self):
        return (print, ("pwned: this pickle ran code",))


def test_malicious_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x_embedder.proj.weight": _Evil()}, f)
    torch.save({"weights": _Evil()}, tmp_path / "evil2.pt")
    for p in (path, tmp_path / "evil2.pt"):
        with pytest.raises(ValueError, match="refusing to load"):
            load_model(p)
    assert "pwned" not in capsys.readouterr().out


def test_checkpoint_shape_mismatch_names_tensors(tmp_path):
    with pytest.raises(ValueError) as e:
        load_model(FIXTURES / "DiT-tiny-release.pt", config=DiTConfig(
            input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=3, num_heads=4, num_classes=12))
    msg = str(e.value)
    assert "y_embedder.embedding_table.weight: checkpoint (11, 64) vs model (13, 64)" in msg
    assert "missing tensors" in msg and "blocks.2.attn.qkv.weight" in msg


def test_fixture_path_finds_the_shipped_files_from_any_folder(tmp_path, monkeypatch):
    """Notebooks find the fixtures through `fixture_path` (cwd = notebooks/, or anywhere else); they ship in the
    package (tests/test_install.py checks the wheel carries them)."""
    monkeypatch.chdir(tmp_path)
    assert fixture_path("official_dit/DiT-tiny-release.pt") == FIXTURES / "DiT-tiny-release.pt"
    with pytest.raises(FileNotFoundError, match="official_sit/SiT-tiny.pt") as err:
        fixture_path("official_dit/missing.pt")
    assert "official_dit/missing.pt" in str(err.value)
