"""Recipes by scale: which recipe for which config / steps (not the device), explicit options win, the resolved
values and their sources land in config.json; `precision="auto"` on CPUs (capability mocked)."""
import json
import math

import pytest
import torch

from ditlab.cli import main
from ditlab.model import get_config
from ditlab.training import TrainConfig, explain_precision, hardware, resolve_precision, resolve_recipe, train
from ditlab.training.loop import lr_at
from ditlab.training.recipes import LONG_RUN, PAPER, QUICK, choose_recipe, patch_for
from ditlab.training.resume import keep_resumed

TINY_ARGS = {"depth": 2, "hidden_size": 32, "num_heads": 2}


@pytest.mark.parametrize("kwargs,name", [
    ({}, "quick"),                                          # nothing given: a short run of a CPU-sized model
    (dict(model="DiT-Mi/2", steps=4000), "quick"),
    (dict(model="DiT-Nano/4"), "quick"),
    (dict(model="DiT-S/2"), "paper"),                       # the paper's configs get the paper's recipe
    (dict(model="DiT-XL/2", steps=1000), "paper"),
    (dict(steps=LONG_RUN), "paper"),                        # a long run
    (dict(model="DiT-Mi/4", steps=LONG_RUN - 1), "quick"),
    (dict(recipe="quick", model="DiT-S/2"), "quick"),       # forced
    (dict(recipe="paper"), "paper"),
])
def test_which_recipe(kwargs, name):
    assert choose_recipe(TrainConfig(**kwargs))[0] == name


def test_quick_is_flow_matching_paper_is_ddpm_flow_options_imply_flow():
    assert resolve_recipe(TrainConfig(), (16, 16))[0].objective == "flow"                  # rectified flow
    assert resolve_recipe(TrainConfig(model="DiT-S/2"), (32, 32))[0].objective == "ddpm"   # the paper's
    assert resolve_recipe(TrainConfig(objective="ddpm"), (16, 16))[0].objective == "ddpm"  # given: wins
    cfg, info = resolve_recipe(TrainConfig(recipe="paper", t_sampling="logit-normal"), (32, 32))
    assert cfg.objective == "flow" and "implied by t_sampling" in info["source"]["objective"]
    with pytest.raises(ValueError, match="path='linear' applies to objective='flow'"):
        TrainConfig(objective="ddpm", path="linear")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_recipe_does_not_depend_on_the_device(device):
    cfg, info = resolve_recipe(TrainConfig(device=device), (32, 32))
    assert info["name"] == "quick" and cfg.model == "DiT-Mi/4"


def test_quick_recipe_sizes_the_patch_to_the_data():
    assert resolve_recipe(TrainConfig(), (16, 16))[0].model == "DiT-Mi/8"       # 2x2 tokens
    assert resolve_recipe(TrainConfig(), (28, 28))[0].model == "DiT-Mi/4"       # 7x7 tokens
    assert resolve_recipe(TrainConfig(), (32, 32))[0].model == "DiT-Mi/4"       # 8x8 tokens
    assert resolve_recipe(TrainConfig(), (64, 64))[0].model == "DiT-Mi/8"       # 8x8 tokens
    assert resolve_recipe(TrainConfig(recipe="paper"), (32, 32))[0].model == "DiT-S/2"  # 256 tokens
    assert resolve_recipe(TrainConfig(recipe="paper"), (28, 28))[0].model == "DiT-S/2"  # 196 tokens
    assert patch_for((30, 30), 64) == 3 and patch_for((8, 8), 1) == 4 and patch_for((13, 13), 4) == 1
    assert patch_for((32, 32), 16) == 8 and patch_for((32, 32), 4) == 8  # at least 2x2 tokens: never p = 16


def test_explicit_options_win_and_every_value_says_where_it_came_from():
    cfg, info = resolve_recipe(TrainConfig(lr=5e-4, steps=123), (32, 32))
    assert (cfg.lr, cfg.steps, cfg.recipe) == (5e-4, 123, "quick")
    assert (cfg.batch_size, cfg.warmup_steps, cfg.ema_decay) == (QUICK["batch_size"], QUICK["warmup_steps"],
                                                                 QUICK["ema_decay"])
    assert info["source"]["lr"] == info["source"]["steps"] == "given"
    assert info["source"]["batch_size"].startswith("recipe") and "64 tokens" in info["source"]["model"]
    assert info["values"]["lr"] == 5e-4
    paper, _ = resolve_recipe(TrainConfig(model="DiT-S/4", ema_decay=0.999), (32, 32))
    assert (paper.lr, paper.batch_size, paper.ema_decay, paper.model) == (PAPER["lr"], 256, 0.999, "DiT-S/4")


def test_a_resumed_run_keeps_its_values_unless_given_again():
    stored = dict(recipe="quick", model="DiT-Nano/2", steps=3000, batch_size=32, lr=1e-3, warmup_steps=50,
                  ema_decay=0.999)
    cfg, kept = keep_resumed(TrainConfig(resume=True, steps=LONG_RUN), stored)  # a long resumed run stays quick
    cfg, info = resolve_recipe(cfg, (16, 16), kept)
    assert info["name"] == "quick" and cfg.steps == LONG_RUN and "resumed" in info["why"]
    assert (cfg.model, cfg.batch_size, cfg.lr, cfg.warmup_steps) == ("DiT-Nano/2", 32, 1e-3, 50)
    assert info["source"]["steps"] == "given" and info["source"]["lr"] == "the resumed run"
    # an explicit recipe on resume: its lr, warm-up, EMA and steps; the run's model and batch size
    cfg, kept = keep_resumed(TrainConfig(resume=True, recipe="paper"), dict(stored, objective="ddpm"))
    cfg, info = resolve_recipe(cfg, (16, 16), kept)
    assert (cfg.model, cfg.batch_size, cfg.objective) == ("DiT-Nano/2", 32, "ddpm")
    assert (cfg.lr, cfg.ema_decay, cfg.steps) == (PAPER["lr"], PAPER["ema_decay"], PAPER["steps"])
    cfg, kept = keep_resumed(TrainConfig(resume=True, recipe="paper"), dict(stored, objective="flow"))
    assert resolve_recipe(cfg, (16, 16), kept)[0].objective == "flow"  # the run's objective, not the recipe's


def test_an_explicit_recipe_on_resume_applies_its_values_but_keeps_the_runs_model(tmp_path):
    kw = dict(model_args=TINY_ARGS, data="digits", image_size=16, limit=64, batch_size=8, sample_every=0,
              verdict=False, progress=False, out_dir=str(tmp_path / "run"))
    train(**kw, model="DiT-Mi/4", objective="ddpm", steps=2, ckpt_every=2, lr=1e-3, warmup_steps=0)
    r = train(**kw, recipe="quick", steps=4, ckpt_every=4, resume=True)
    c = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (c["train"]["model"], c["train"]["objective"], c["train"]["batch_size"]) == ("DiT-Mi/4", "ddpm", 8)
    assert c["train"]["lr"] == QUICK["lr"] and c["train"]["warmup_steps"] == QUICK["warmup_steps"]
    assert c["recipe"]["source"]["model"] == "the resumed run" and c["recipe"]["source"]["lr"].startswith("recipe")
    assert c["resumes"][-1]["changed"]["lr"] == [1e-3, QUICK["lr"]] and r["step"] == 4


def test_resume_keeps_the_runs_values_for_options_not_given_again(tmp_path):
    kw = dict(model_args=TINY_ARGS, data="digits", image_size=16, limit=64, batch_size=8, ckpt_every=2,
              sample_every=0, verdict=False, progress=False, out_dir=str(tmp_path / "run"))
    train(**kw, steps=2, lr=1e-3, warmup_steps=0)
    r = train(**kw, steps=4, resume=True)
    c = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (c["train"]["lr"], c["train"]["warmup_steps"], c["train"]["steps"]) == (1e-3, 0, 4)
    assert c["recipe"]["source"]["lr"] == "the resumed run" and r["log"][-1]["lr"] == 1e-3


def test_a_checkpoint_from_before_recipes_and_flow_matching_resumes_as_it_was_trained(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    kw = dict(model="DiT-Mi/4", model_args=TINY_ARGS, data="digits", image_size=16, limit=64, batch_size=8, lr=1e-3,
              sample_every=0, verdict=False, progress=False, out_dir=str(tmp_path / "run"))
    train(**kw, objective="ddpm", warmup_steps=0, steps=2, ckpt_every=2)
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    with safe_open(str(ckpt), "pt") as f:
        meta = f.metadata()
    old = json.loads(meta["train_config"])
    for k in ("recipe", "objective", "warmup_steps"):  # options older checkpoints did not record
        del old[k]
    save_file(load_file(str(ckpt)), str(ckpt), metadata={**meta, "train_config": json.dumps(old)})
    r = train(**kw, steps=4, ckpt_every=4, resume=True)
    assert (r["train_config"].objective, r["train_config"].warmup_steps) == ("ddpm", 0) and r["step"] == 4
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resumes"][-1]["changed"] == \
        dict(steps=[2, 4], recipe=["auto", "quick"], ckpt_every=[2, 4])


def test_train_writes_the_resolved_recipe_and_precision_to_config_json(tmp_path, capsys):
    r = train(model_args=TINY_ARGS, data="digits", image_size=16, limit=64, steps=2, batch_size=8, ckpt_every=2,
              sample_every=0, verdict=False, out_dir=str(tmp_path / "run"))
    c = json.loads((tmp_path / "run" / "config.json").read_text())
    assert c["recipe"]["name"] == "quick" and c["train"]["recipe"] == "quick"
    assert c["train"]["lr"] == QUICK["lr"] and c["train"]["model"] == "DiT-Mi/8" and c["train"]["steps"] == 2
    assert c["train"]["objective"] == "flow" and not c["model"]["learn_sigma"]
    assert c["recipe"]["source"]["steps"] == "given" and c["precision"] in ("fp32", "bf16") and c["precision_why"]
    assert r["train_config"].lr == QUICK["lr"]
    out = capsys.readouterr().out
    assert "recipe: quick" in out and "precision:" in out


def test_warmup_ramps_the_lr_linearly(tmp_path):
    r = train(model_args=TINY_ARGS, data="digits", image_size=16, limit=64, steps=4, batch_size=8, lr=1e-3,
              warmup_steps=4, log_every=1, ckpt_every=4, sample_every=0, verdict=False, progress=False,
              out_dir=str(tmp_path / "run"))
    assert [row["lr"] for row in r["log"]] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])


def test_cosine_schedule_decays_to_zero_after_the_warmup(tmp_path):
    r = train(model_args=TINY_ARGS, data="digits", image_size=16, limit=64, steps=6, batch_size=8, lr=1e-3,
              warmup_steps=2, lr_schedule="cosine", log_every=1, ckpt_every=6, sample_every=0, verdict=False,
              progress=False, out_dir=str(tmp_path / "run"))
    cos = [0.5e-3 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]  # 4 steps after the warm-up
    assert [row["lr"] for row in r["log"]] == pytest.approx([5e-4, 1e-3, *cos])
    assert lr_at(TrainConfig(lr=1.0, warmup_steps=0, steps=10, lr_schedule="constant"), 9) == 1.0
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="linear")


def test_cli_flags_given_win_over_the_recipe(tmp_path):
    main(["train", "--model-args", json.dumps(TINY_ARGS), "--data", "digits", "--image-size", "16", "--limit", "64",
          "--steps", "2", "--batch-size", "8", "--lr", "5e-4", "--sample-every", "0", "--no-verdict", "--no-progress",
          "--out-dir", str(tmp_path / "run")])
    c = json.loads((tmp_path / "run" / "config.json").read_text())
    assert c["train"]["lr"] == 5e-4 and c["recipe"]["source"]["lr"] == "given"
    assert c["train"]["ema_decay"] == QUICK["ema_decay"] and c["recipe"]["source"]["ema_decay"] == "recipe"
    with pytest.raises(SystemExit):
        main(["train", "--recipe", "fast"])


def test_bad_recipe_is_refused():
    with pytest.raises(ValueError, match="recipe must be one of"):
        TrainConfig(recipe="fast")
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)


# ---------------------------------------------------------------------------------------------- precision

def _cpu(monkeypatch, capability, flags):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: set(flags))


@pytest.mark.parametrize("capability,flags,native", [
    ("AVX512", {"avx512f", "avx512_bf16"}, True),   # AMD Zen 4 / Intel Cooper Lake
    ("AMX", {"amx_bf16", "amx_tile"}, True),         # Intel Sapphire Rapids
    ("AVX512", {"avx512f"}, False),                  # AVX-512 without bf16: emulated
    ("AVX2", {"avx2", "avx512_bf16"}, False),        # torch would not use the AVX-512 kernels
    ("DEFAULT", set(), False),
])
def test_native_bf16_detection(monkeypatch, capability, flags, native):
    _cpu(monkeypatch, capability, flags)
    assert hardware.cpu_has_native_bf16() is native


def test_auto_precision_on_a_cpu_picks_bf16_where_it_pays(monkeypatch):
    cpu = torch.device("cpu")
    wide = get_config("DiT-Mi/4", input_size=32)     # width 128, 64 tokens
    narrow = get_config("DiT-Nano/2", input_size=16)  # width 64: slower in bf16
    few = get_config("DiT-Mi/4", input_size=16)       # 16 tokens: slower in bf16
    _cpu(monkeypatch, "AVX512", {"avx512_bf16"})
    assert explain_precision("auto", cpu, wide)[0] == "bf16"
    for small in (narrow, few):
        precision, why = explain_precision("auto", cpu, small)
        assert precision == "fp32" and "too small" in why
    assert resolve_precision("fp32", cpu, wide) == "fp32" and explain_precision("bf16", cpu, narrow) == ("bf16", "given")
    _cpu(monkeypatch, "AVX2", {"avx2"})
    precision, why = explain_precision("auto", cpu, wide)
    assert precision == "fp32" and "no native bf16" in why
