"""Training: resume is exact, NaN stops cleanly, DDP (2 CPU processes, gloo) reproduces one process,
mixed-precision and checkpointing paths run, bad input is refused before work starts."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from safetensors import safe_open

from ditlab import load_model
from ditlab.data import load_dataset
from ditlab.training import TrainConfig, train

TINY = dict(model="DiT-Mi/8", model_args={"depth": 2, "hidden_size": 32, "num_heads": 2}, data="digits",
            limit=128, batch_size=8, log_every=1, sample_every=0, progress=False, lr=1e-3,
            warmup_steps=0, verdict=False, objective="ddpm")  # the loop's tests are written around DDPM's loss


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=128)


def _weights(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_interrupted_and_resumed_run_ends_with_identical_weights(tmp_path, digits):
    full = train(**TINY, steps=6, ckpt_every=3, out_dir=str(tmp_path / "full"), dataset=digits)
    train(**TINY, steps=3, ckpt_every=3, out_dir=str(tmp_path / "part"), dataset=digits)
    resumed = train(**TINY, steps=6, ckpt_every=3, out_dir=str(tmp_path / "part"), resume=True, dataset=digits)
    a, b = _weights(tmp_path / "full" / "checkpoint.safetensors"), _weights(tmp_path / "part" / "checkpoint.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("opt.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["loss"] for r in full["log"][3:]] == [r["loss"] for r in resumed["log"]]
    rows = list(csv.DictReader(open(tmp_path / "part" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_finishes_the_step_saves_it_and_resume_ends_identical(tmp_path, digits):
    """Ctrl-C (SIGINT) during training: the step ends, its checkpoint is written, KeyboardInterrupt says where;
    resuming gives the weights of an uninterrupted run. The previous SIGINT handler is back afterwards."""
    import os
    import signal

    handler = signal.getsignal(signal.SIGINT)

    def ctrl_c(event, info):
        if event == "log" and info["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    full = train(**TINY, steps=5, ckpt_every=5, out_dir=str(tmp_path / "full"), dataset=digits)
    with pytest.raises(KeyboardInterrupt, match="interrupted after step 2"):
        train(**TINY, steps=5, ckpt_every=5, out_dir=str(tmp_path / "part"), dataset=digits, callback=ctrl_c)
    assert signal.getsignal(signal.SIGINT) is handler
    with safe_open(str(tmp_path / "part" / "checkpoint.safetensors"), framework="pt") as f:
        assert int(f.metadata()["step"]) == 2
    resumed = train(**TINY, steps=5, ckpt_every=5, out_dir=str(tmp_path / "part"), resume=True, dataset=digits)
    for a, b in zip(full["model"].parameters(), resumed["model"].parameters()):
        assert torch.equal(a, b)


def test_ema_weights_load_as_a_model_with_class_names(tmp_path, digits):
    r = train(**TINY, steps=2, ckpt_every=2, out_dir=str(tmp_path / "run"), dataset=digits)
    model = load_model(tmp_path / "run")
    assert model.classes == digits.classes
    for k, v in r["ema"].state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    ema, live = r["ema"].final_layer.linear.weight, r["model"].final_layer.linear.weight
    assert not torch.equal(ema, live) and ema.abs().sum() > 0


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, digits, monkeypatch):
    from ditlab.diffusion import gaussian as diffusion

    real = diffusion.GaussianDiffusion.training_losses
    calls = {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        out = real(self, *a, **k)
        if calls["n"] == 5:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(diffusion.GaussianDiffusion, "training_losses", flaky)
    with pytest.raises(FloatingPointError, match="loss is nan at step 5.*last good checkpoint"):
        train(**TINY, steps=10, ckpt_every=2, out_dir=str(tmp_path / "run"), dataset=digits)
    with safe_open(str(tmp_path / "run" / "checkpoint.safetensors"), framework="pt") as f:
        assert f.metadata()["step"] == "4"
        assert all(torch.isfinite(f.get_tensor(k)).all() for k in f.keys() if k.startswith("model."))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_paths_track_fp32(tmp_path, digits, precision):
    ref = train(**TINY, steps=3, ckpt_every=3, out_dir=str(tmp_path / "fp32"), dataset=digits, precision="fp32")
    r = train(**TINY, steps=3, ckpt_every=3, out_dir=str(tmp_path / precision), dataset=digits, precision=precision)
    for a, b in zip(ref["log"], r["log"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=0.05)


def test_grad_checkpointing_gives_the_same_steps_and_clipping_clips(tmp_path, digits, monkeypatch):
    a = train(**TINY, steps=2, ckpt_every=2, out_dir=str(tmp_path / "a"), dataset=digits)
    b = train(**TINY, steps=2, ckpt_every=2, out_dir=str(tmp_path / "b"), dataset=digits, grad_checkpointing=True)
    for k, v in a["model"].state_dict().items():
        torch.testing.assert_close(b["model"].state_dict()[k], v, atol=1e-6, rtol=1e-5)
    norms = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm):
        params = list(params)
        before = real(params, max_norm)
        norms.append((before.item(), torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    train(**TINY, steps=2, ckpt_every=2, out_dir=str(tmp_path / "c"), dataset=digits, grad_clip=1e-3)
    assert len(norms) == 2 and all(before > 1e-3 and after == pytest.approx(1e-3, rel=1e-3) for before, after in norms)


def test_samples_png_and_callback(tmp_path, digits):
    events = []
    train(**{**TINY, "sample_every": 2, "sample_steps": 2}, steps=2, ckpt_every=2, out_dir=str(tmp_path / "r"),
          dataset=digits, callback=lambda e, info: events.append((e, info)))
    assert (tmp_path / "r" / "samples" / "step_0000002.png").exists()
    kinds = [e for e, _ in events]
    assert kinds.count("log") == 2 and kinds.count("samples") == 1
    images = dict(events)["samples"]["images"]
    assert images.shape == (40, 1, 32, 32) and images.abs().max() <= 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), "steps must be an int >= 1, got 0"),
    (dict(batch_size=-1), "batch_size must be an int >= 1, got -1"),
    (dict(precision="fp8"), "precision must be one of"),
    (dict(lr=0.0), "lr must be a number > 0, got 0.0"),
])
def test_bad_config_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_bad_inputs_before_work(tmp_path, digits):
    with pytest.raises(ValueError, match="does not match the data"):
        train(**{**TINY, "model_args": {"in_channels": 3}}, steps=1, out_dir=str(tmp_path / "x"), dataset=digits)
    with pytest.raises(ValueError, match="larger than the dataset"):
        train(**{**TINY, "batch_size": 1000}, steps=1, out_dir=str(tmp_path / "x"), dataset=digits)
    with pytest.raises(FileNotFoundError, match="resume=True"):
        train(**TINY, steps=1, out_dir=str(tmp_path / "none"), resume=True, dataset=digits)
    train(**TINY, steps=1, ckpt_every=1, out_dir=str(tmp_path / "r"), dataset=digits)
    with pytest.raises(ValueError, match="model_args .* would change the run's model"):
        train(**{**TINY, "model_args": {"depth": 3, "hidden_size": 32, "num_heads": 2}}, steps=2,
              out_dir=str(tmp_path / "r"), resume=True, dataset=digits)
    with pytest.raises(ValueError, match="unknown dataset|valid names"):
        train(**{**TINY, "data": "imagenet-22k"}, steps=1, out_dir=str(tmp_path / "y"))


def _cli_train(tmp_path, name, nproc):
    args = ["--model", "DiT-Mi/8", "--model-args", json.dumps(TINY["model_args"]), "--data", "digits",
            "--limit", "128", "--batch-size", "8", "--steps", "3", "--log-every", "1", "--sample-every", "0",
            "--no-progress", "--lr", "1e-3", "--out-dir", str(tmp_path / name)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if nproc == 1:
        cmd = [sys.executable, "-m", "ditlab", "train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "ditlab", "train", *args]
    subprocess.run(cmd, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=120)
    return [float(r["loss"]) for r in csv.DictReader(open(tmp_path / name / "log.csv"))]


def test_ddp_two_processes_match_one_process(tmp_path):
    one = _cli_train(tmp_path, "one", 1)
    two = _cli_train(tmp_path, "two", 2)
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=1e-4, abs=1e-6)


def test_latent_mode_trains_on_cached_vae_latents(tmp_path, monkeypatch):
    from test_latents import tiny_vae

    vae_dir = tmp_path / "vae"
    tiny_vae().save_pretrained(vae_dir)
    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "cache"))
    kw = dict(TINY, data="shapes", image_size=64, limit=16, vae=str(vae_dir), steps=2, ckpt_every=2,
              model_args={"depth": 1, "hidden_size": 32, "num_heads": 2})
    r = train(**kw, out_dir=str(tmp_path / "run"))
    assert (r["config"].in_channels, r["config"].input_size) == (4, 32)  # 64 px -> 32x32x4 latents
    assert any(p.suffix == ".safetensors" for p in (tmp_path / "cache").rglob("*")), "latents were not cached"
    from diffusers import AutoencoderKL

    monkeypatch.setattr(AutoencoderKL, "encode", lambda *a, **k: pytest.fail("latents were encoded again"))
    r2 = train(**kw, out_dir=str(tmp_path / "run2"))
    assert r2["log"][0]["loss"] == pytest.approx(r["log"][0]["loss"])


def test_auto_precision_picks_fp16_on_a_t4(monkeypatch):
    from ditlab.training import resolve_precision

    # a T4 (sm 7.5) "supports" bf16 only by emulation: auto must pick fp16 + GradScaler there
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # A100/H100
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp16", torch.device("cpu")) == "fp16"


def _log_steps(run_dir):
    from ditlab.training import read_log

    return [int(r["step"]) for r in read_log(run_dir)]


def test_log_restarts_with_a_fresh_run_and_resume_drops_rows_past_the_checkpoint(tmp_path, digits):
    d = tmp_path / "run"
    train(**TINY, steps=4, ckpt_every=2, out_dir=str(d), dataset=digits)
    assert _log_steps(d) == [1, 2, 3, 4]
    train(**TINY, steps=3, ckpt_every=2, out_dir=str(d), dataset=digits, overwrite=True)  # a fresh run replaces it
    assert _log_steps(d) == [1, 2, 3]  # not 1..4 followed by 1..3
    # a run killed after logging steps 4 and 5 but before checkpointing them: resuming from step 3 drops them
    with open(d / "log.csv") as f:
        header = f.readline().strip().split(",")
    with open(d / "log.csv", "a") as f:
        for step in (4, 5):
            f.write(",".join(str(step) if k == "step" else "-1" for k in header) + "\n")
    train(**TINY, steps=4, ckpt_every=2, out_dir=str(d), dataset=digits, resume=True)
    assert _log_steps(d) == [1, 2, 3, 4]
    with open(d / "log.csv") as f:
        assert float(list(csv.DictReader(f))[-1]["loss"]) > 0  # step 4 is the resumed run's, not the stale row
