"""Clear errors instead of tracebacks: bad options, devices, files and checkpoints, out of memory — each a
ValueError / TypeError / OSError / MemoryError naming the input and what to do, raised before heavy work; the
CLI prints them as `ditlab <cmd>: error: ...`. And the number of classes is never guessed."""
import os
import re

import pytest
import torch
from test_train import TINY

from ditlab import DiT, DiTConfig, load_model, save_model
from ditlab.cli import main
from ditlab.data import load_dataset
from ditlab.sampling import sample
from ditlab.training import TrainConfig, train


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if training data is loaded: the error must come first."""
    from ditlab.training import loop

    monkeypatch.setattr(loop, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the error"))


def _cli_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    msg = str(e.value.code)
    assert msg.startswith(f"ditlab {argv[0]}: error: "), msg
    return msg


# ---- training options --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lr="1e-3"), TypeError, "lr must be a number or None, got str '1e-3'"),
    (dict(steps=True), TypeError, "steps must be an int or None, got bool True"),
    (dict(steps=2.5), TypeError, "steps must be an int or None, got float"),
    (dict(model_args=[4]), TypeError, "model_args must be a dict"),
    (dict(weight_decay=-1), ValueError, "weight_decay must be a number >= 0, got -1"),
    (dict(lr=float("nan")), ValueError, "lr must be a finite number, got nan"),
    (dict(ema_decay=1.0), ValueError, r"ema_decay must be in \[0, 1\)"),
    (dict(grad_clip=0.0), ValueError, "grad_clip must be a number > 0"),
    (dict(sample_steps=2000), ValueError, r"sample_steps must be an int in \[1, 1000\], got 2000"),
    (dict(sample_cfg=float("inf")), ValueError, "sample_cfg must be a finite number, got inf"),
    (dict(sample_cfg=float("nan")), ValueError, "sample_cfg must be a finite number, got nan"),
    (dict(model_args={"dpeth": 4}), ValueError, r"unknown DiTConfig fields \['dpeth'\]; valid fields: .*'depth'"),
    (dict(model="DiT-Q/2"), ValueError, "unknown config 'DiT-Q/2'; valid names"),
    (dict(model="DiT-Mi/4", image_size=30), ValueError, "image_size=30: input_size 30 must be .* divisible by patch_size=4"),
    (dict(class_dropout_prob=1.5), ValueError, "class_dropout_prob must be in"),
    (dict(channels=2), ValueError, r"channels must be one of \[None, 1, 3\], got 2"),
    (dict(limit=0), ValueError, "limit must be an int >= 1, got 0"),
    (dict(resume=True, overwrite=True), ValueError, "choose one"),
])
def test_bad_options_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**kwargs)


def test_train_type_errors_come_before_the_data(no_data, tmp_path):
    with pytest.raises(TypeError, match="lr must be a number"):
        train(lr="1e-3", out_dir=str(tmp_path / "r"))
    with pytest.raises(TypeError, match="config must be a TrainConfig, a dict or None, got str 'digits'"):
        train("digits")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, match", [
    (["--lr", "-1e-3"], "lr must be a number > 0, got -0.001"),  # parsed without the `=` form, then refused
    (["--weight-decay", "-0.5"], "weight_decay must be a number >= 0, got -0.5"),
    (["--device", "gpu0"], "device 'gpu0' is not a device name; use 'auto', 'cpu', 'cuda'"),
    (["--model-args", '{"dpeth": 4}'], r"unknown DiTConfig fields \['dpeth'\]; valid fields"),
    (["--sample-steps", "2000"], r"sample_steps must be an int in \[1, 1000\]"),
    (["--sample-cfg", "nan"], "sample_cfg must be a finite number, got nan"),
])
def test_cli_train_errors_before_the_data(no_data, tmp_path, capsys, argv, match):
    msg = _cli_error(capsys, ["train", *argv, "--out-dir", str(tmp_path / "run")])
    assert re.search(match, msg), msg
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_refused_before_the_data(no_data, tmp_path, capsys):
    msg = _cli_error(capsys, ["train", "--device", "cuda", "--out-dir", str(tmp_path / "run")])
    assert "device 'cuda': CUDA is not available here" in msg and "use 'cpu' or 'auto'" in msg
    msg = _cli_error(capsys, ["sample", "--ckpt", "x", "--device", "cuda:1"])
    assert "CUDA is not available" in msg


def test_a_missing_data_file_is_named_and_leaves_no_run_folder(tmp_path, capsys):
    msg = _cli_error(capsys, ["train", "--data", str(tmp_path / "missing.zip"), "--out-dir", str(tmp_path / "run")])
    assert "dataset file or folder not found" in msg and "missing.zip" in msg
    assert not (tmp_path / "run").exists()


def test_a_config_name_of_the_wrong_type_is_a_type_error():
    from ditlab import estimate_flops, get_config

    for call in (get_config, estimate_flops):
        with pytest.raises(TypeError, match="config must be a name such as 'DiT-XL/2' or a DiTConfig, got int"):
            call(42)


def test_out_dir_that_is_a_file_is_refused_before_the_data(no_data, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert "out_dir" in _cli_error(capsys, ["train", "--out-dir", str(tmp_path / "f")])


def test_out_of_memory_is_caught_with_advice(tmp_path, monkeypatch):
    from ditlab.diffusion import gaussian

    digits = load_dataset("digits", limit=64)
    for err in (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
                RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")):
        def oom(*a, err=err, **k):
            raise err

        monkeypatch.setattr(gaussian.GaussianDiffusion, "training_losses", oom)
        with pytest.raises(MemoryError, match=r"out of memory on cpu with a batch of 8: try a smaller batch_size=4, "
                                              r"grad_checkpointing=True"):
            train(**TINY, steps=2, out_dir=str(tmp_path / type(err).__name__), dataset=digits)

    def other(*a, **k):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(gaussian.GaussianDiffusion, "training_losses", other)
    with pytest.raises(RuntimeError, match="shapes do not match"):  # other errors are left alone
        train(**TINY, steps=2, out_dir=str(tmp_path / "other"), dataset=digits)


# ---- sampling --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    return DiT(DiTConfig(input_size=8, patch_size=4, in_channels=1, hidden_size=32, depth=1, num_heads=2,
                         num_classes=3)).eval()


@pytest.mark.parametrize("labels, kwargs, error, match", [
    (3.7, {}, TypeError, "labels must be class ids .* got float 3.7"),
    ([1, True], {}, TypeError, "got bool True"),
    ([1.0, 2.0], {}, TypeError, "got float 1.0"),
    (torch.tensor([1.0]), {}, TypeError, "array of float32"),
    (torch.tensor([True]), {}, TypeError, "array of bool"),
    (object(), {}, TypeError, "labels must be a class id, a class name, or a list"),
    ([1], dict(cfg_scale=float("nan")), ValueError, "cfg_scale must be a finite number, got nan"),
    ([1], dict(cfg_scale=float("inf")), ValueError, "cfg_scale must be a finite number, got inf"),
    ([1], dict(cfg_scale="4"), TypeError, "cfg_scale must be a number"),
    ([1], dict(seed=1.5), TypeError, "seed must be an int"),
    ([1], dict(device="gpu0"), ValueError, "device 'gpu0' is not a device name"),
])
def test_sample_api_errors_are_named(tiny, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        sample(tiny, labels, steps=2, progress=False, **kwargs)


def test_sample_accepts_integer_arrays(tiny):
    out = sample(tiny, torch.tensor([0, 2]), steps=2, progress=False)
    assert out.labels.tolist() == [0, 2]


def test_cli_sample_errors_before_loading(tmp_path, capsys, monkeypatch):
    from ditlab import cli

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: pytest.fail("model loaded before the error"))
    base = ["sample", "--ckpt", str(tmp_path / "none")]
    assert "--out " + repr(str(tmp_path)) + " is a folder" in _cli_error(capsys, [*base, "--out", str(tmp_path)])
    assert "--nrow must be an int >= 1, got 0" in _cli_error(capsys, [*base, "--nrow", "0"])
    assert "--nrow must be an int >= 1, got -2" in _cli_error(capsys, [*base, "--nrow", "-2"])
    assert "cfg_scale must be a finite number" in _cli_error(capsys, [*base, "--cfg-scale", "nan"])
    assert "steps must be an int in [1, 1000]" in _cli_error(capsys, [*base, "--steps", "0"])
    (tmp_path / "f").write_text("x")
    assert "is a file, not a folder" in _cli_error(capsys, [*base, "--out", str(tmp_path / "f" / "s.png")])


# ---- checkpoint files ------------------------------------------------------------------------------------
def test_corrupt_checkpoints_are_named(tmp_path, tiny, capsys):
    good = save_model(tiny, tmp_path / "good.safetensors").read_bytes()
    torch.save(tiny.state_dict(), tmp_path / "good.pt")
    pt = (tmp_path / "good.pt").read_bytes()
    files = {"truncated.safetensors": good[: len(good) // 2], "random.safetensors": os.urandom(2000),
             "empty.safetensors": b"", "truncated.pt": pt[: len(pt) // 2], "random.pt": os.urandom(2000),
             "empty.pt": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}.*(truncated|corrupt)"):
            load_model(tmp_path / name)
    msg = _cli_error(capsys, ["sample", "--ckpt", str(tmp_path / "random.safetensors"), "--out", str(tmp_path / "s.png")])
    assert "is not a readable .safetensors file" in msg


def test_a_training_checkpoint_where_weights_are_expected_names_the_file_to_pass(tmp_path):
    run = tmp_path / "run"
    train(**TINY, steps=1, out_dir=str(run), dataset=load_dataset("digits", limit=64))
    with pytest.raises(ValueError, match=f"is a training checkpoint .*pass the run folder '{run}' or "
                                         f"'{run / 'ema.safetensors'}'"):
        load_model(run / "checkpoint.safetensors")
    assert load_model(run).config.num_classes == 10


def test_the_number_of_classes_is_recorded_or_never_guessed(tmp_path):
    """Shapes can't tell R classes (trained with class_dropout_prob=0) from R-1 classes + the null class."""
    cfg = DiTConfig(input_size=8, patch_size=4, in_channels=1, hidden_size=48, depth=3, num_heads=3,
                    num_classes=10, class_dropout_prob=0.0)  # DiT-Pico widths: num_heads is inferable
    model = DiT(cfg)
    assert load_model(save_model(model, tmp_path / "m.safetensors")).config == cfg  # ditlab records it
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="label table has 10 rows, which is 10 classes .* or 9 classes \\+ the null "
                                         "class. Pass config="):
        load_model(tmp_path / "plain.pt")
    assert load_model(tmp_path / "plain.pt", config=cfg).config == cfg
    released = DiT(cfg.replace(num_classes=1000, class_dropout_prob=0.1))  # the official releases: 1000 + null
    torch.save(released.state_dict(), tmp_path / "release.pt")
    assert load_model(tmp_path / "release.pt").config == released.config


def _tiny_file(tmp_path, name="m.safetensors", **metadata):
    model = DiT(DiTConfig(input_size=8, patch_size=4, in_channels=1, hidden_size=48, depth=1, num_heads=3,
                          num_classes=10))
    return model, save_model(model, tmp_path / name, **metadata)


def test_weights_with_nan_or_inf_are_refused_on_load(tmp_path, capsys):
    model, _ = _tiny_file(tmp_path)
    with torch.no_grad():
        model.final_layer.linear.weight[0, 0] = float("nan")
        model.pos_embed[0, 0, 0] = float("inf")
    path = save_model(model, tmp_path / "diverged.safetensors")
    with pytest.raises(ValueError, match=r"diverged.safetensors: 2 weight tensors hold NaN or inf"):
        load_model(path)
    msg = _cli_error(capsys, ["sample", "--ckpt", str(path), "--out", str(tmp_path / "s.png")])
    assert "NaN or inf" in msg and not (tmp_path / "s.png").exists()  # no blank grid, exit non-zero


@pytest.mark.parametrize("field, value, match", [
    ("config", "{not json", r"metadata field 'config' is not valid JSON"),
    ("classes", "[1, 2", r"metadata field 'classes' is not valid JSON"),
    ("objective", "flow", r"metadata field 'objective' is not valid JSON"),
    ("objective", '{"objective": "gan"}', r"metadata field 'objective' must be one of \['ddpm', 'flow'\], got 'gan'"),
    ("objective", '["flow"]', r"metadata field 'objective' must be a JSON object"),
])
def test_bad_checkpoint_metadata_is_refused_naming_file_and_field(tmp_path, capsys, field, value, match):
    model, good = _tiny_file(tmp_path)
    from ditlab.io import load_tensors, save_tensors

    sd, meta = load_tensors(good)
    path = save_tensors(tmp_path / "bad.safetensors", sd, {**meta, field: value})
    with pytest.raises((ValueError, TypeError), match=f"bad.safetensors: {match}"):
        load_model(path)
    assert re.search(match, _cli_error(capsys, ["sample", "--ckpt", str(path), "--out", str(tmp_path / "s.png")]))


@pytest.mark.parametrize("exc, code", [(ValueError("bad value"), "ditlab flops: error: bad value"),
                                       (OSError("disk full"), "ditlab flops: error: disk full"),
                                       (RuntimeError("boom"), "ditlab flops: error: RuntimeError: boom"),
                                       (KeyboardInterrupt(), 130)])
def test_every_refusal_exits_non_zero_without_a_traceback(monkeypatch, capsys, exc, code):
    from ditlab import cli

    def fail(args):
        raise exc

    monkeypatch.setattr(cli, "cmd_flops", fail)
    monkeypatch.delenv("DITLAB_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["flops"])
    assert e.value.code == code and "Traceback" not in capsys.readouterr().err
