"""Bad inputs in one table (issue 26): each row a CLI command (run in-process, in a folder that also holds a
user's own files) or a Python call, the error it must end in, and a piece of the message that names the input.
For CLI rows nothing that was in the folder before is changed (sha256 of every file, before and after)."""
import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ditlab import DiTConfig, load_model
from ditlab.cli import main
from ditlab.data import load_dataset
from ditlab.model import get_config
from ditlab.sampling import Guidance, Sampler
from ditlab.training import TrainConfig


def _npz(folder, name="bad.npz", **arrays):
    np.savez(folder / name, **arrays)
    return folder / name


def _file(folder, name, data=b"not what it says"):
    (folder / name).write_bytes(data)
    return folder / name


def _zip(folder, name="pics.zip"):
    with zipfile.ZipFile(folder / name, "w") as z:
        z.writestr("a/0.png", b"garbage, not a png")
    return folder / name


CLI = [  # (argv, what the message must contain); every one must exit non-zero before heavy work
    (["sample", "--ckpt", "digit-p4"], "digit-p4"),
    (["sample", "--ckpt", "runs/trian"], "runs/trian"),
    (["sample", "--ckpt", "digits-p4", "--cfg-scale", "1e30"], "cfg_scale"),
    (["sample", "--ckpt", "digits-p4", "--cfg-scale", "nan"], "cfg_scale"),
    (["sample", "--ckpt", "digits-p4", "--eta", "5"], "eta"),
    (["sample", "--ckpt", "digits-p4", "--time-shift", "inf"], "time_shift"),
    (["sample", "--ckpt", "digits-p4", "--steps", "0"], "steps"),
    (["sample", "--ckpt", "digits-p4", "--steps", "1000000"], "steps"),
    (["sample", "--ckpt", "digits-p4", "--per-class", "1000000"], "--per-class"),
    (["sample", "--ckpt", "digits-p4", "--sampler", "magic"], "magic"),
    (["sample", "--ckpt", "digits-p4", "--out", "grid.gif"], "grid.gif"),
    (["sample", "--ckpt", "digits-p4", "--out", "grid"], "--out"),
    (["sample", "--ckpt", "digits-p4", "--out", "notes.txt"], "notes.txt"),
    (["sample", "--ckpt", "digits-p4", "--labels", "99"], "99"),
    (["sample", "--ckpt", "digits-p4", "--device", "tpu"], "tpu"),
    (["sample", "--ckpt", "{user}/model.pt"], "model.pt"),
    (["train", "--model", "DiT-Q/2"], "DiT-Q/2"),
    (["train", "--data", "digits", "--image-size", "30", "--model", "DiT-Mi/4"], "image_size"),
    (["train", "--data", "{user}/missing.npz"], "missing.npz"),
    (["train", "--data", "{user}/notes.txt"], "notes.txt"),
    (["train", "--steps", "0"], "steps"),
    (["train", "--lr", "nan"], "lr"),
    (["train", "--ema-decay", "1.5"], "ema_decay"),
    (["train", "--precision", "fp8"], "fp8"),
    (["train", "--channels", "2"], "channels"),
    (["train", "--model-args", "{not json"], "model-args"),
    (["train", "--model-args", '{"dpeth": 4}'], "dpeth"),
    (["train", "--recipe", "nope"], "nope"),
    (["train", "--resume", "--overwrite"], "choose one"),
    (["train", "--device", "cuda:7"], "cuda"),
    (["demo", "--steps", "-1"], "steps"),
    (["flops", "--method", "guess"], "guess"),
    (["scaling", "--sizes", "Q"], "Q"),
]

API = [  # (call, exception type, what the message must contain)
    (lambda d: DiTConfig(patch_size=3), ValueError, "patch_size"),
    (lambda d: DiTConfig(hidden_size=100, num_heads=16), ValueError, "num_heads"),
    (lambda d: DiTConfig(block="adaLN-One"), ValueError, "adaLN-One"),
    (lambda d: DiTConfig(depth=2.5), ValueError, "depth must be a positive int"),
    (lambda d: get_config("DiT-Q/2"), ValueError, "DiT-Q/2"),
    (lambda d: TrainConfig(lr="1e-3"), TypeError, "lr"),
    (lambda d: TrainConfig(class_dropout_prob=1.5), ValueError, "class_dropout_prob"),
    (lambda d: Sampler(eta=5), ValueError, "eta"),
    (lambda d: Sampler(time_shift=1e9), ValueError, "time_shift"),
    (lambda d: Guidance(scale=float("inf")), ValueError, "scale"),
    (lambda d: load_model(d / "nowhere.pt"), FileNotFoundError, "nowhere.pt"),
    (lambda d: load_model(_file(d, "junk.safetensors")), ValueError, "junk.safetensors"),
    (lambda d: load_dataset("mnits"), ValueError, "mnits"),
    (lambda d: load_dataset(_file(d, "x.npz")), ValueError, "x.npz"),
    (lambda d: load_dataset(_npz(d, x_train=np.zeros((4, 8, 8), np.uint8))), ValueError, "y_train"),
    (lambda d: load_dataset(_npz(d, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(3))), ValueError,
     "labels must have shape (4,)"),
    (lambda d: load_dataset(_npz(d, x_train=np.full((2, 8, 8), np.nan), y_train=np.zeros(2))), ValueError, "nan"),
    (lambda d: load_dataset(_npz(d, x_train=np.zeros((2, 8, 8), np.uint8), y_train=np.array([0, 10**6]))),
     ValueError, "relabel"),
    (lambda d: load_dataset(_zip(d), cache_dir=d / "cache"), ValueError, "cannot decode image 'a/0.png'"),
    (lambda d: load_dataset("digits", split="dev"), ValueError, "dev"),
    (lambda d: load_dataset("digits", limit=0), ValueError, "limit"),
]


def _checksums(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A folder like a user's: their notes, a data file, a model file; the command runs in it."""
    (tmp_path / "notes.txt").write_text("my notes\n")
    np.savez(tmp_path / "mine.npz", x_train=np.zeros((2, 8, 8), np.uint8), y_train=np.zeros(2, np.int64))
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv, names", CLI, ids=[" ".join(a)[:50] for a, _ in CLI])
def test_cli_refuses_bad_input_and_changes_nothing_of_the_users(user_folder, argv, names, monkeypatch, capsys):
    from ditlab.training import loop

    if "--data" not in argv:  # the refusal comes before any data is read
        monkeypatch.setattr(loop, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the refusal"))
    argv = [a.replace("{user}", str(user_folder)) for a in argv]
    before = _checksums(user_folder)
    with pytest.raises(SystemExit) as e:
        main(argv)
    code = e.value.code
    assert code not in (0, None), f"{argv} exited 0"
    message = code if isinstance(code, str) else capsys.readouterr().err  # a refusal, or argparse's usage error
    assert f"ditlab {argv[0]}: error:" in message, f"{argv}: exit {code!r}, {message!r}"
    assert names.lower() in message.lower(), f"{argv}: {message!r} does not name {names!r}"
    assert {k: v for k, v in _checksums(user_folder).items() if k in before} == before, "a user's file changed"


@pytest.mark.parametrize("call, error, names", API, ids=[f"api-{i}" for i in range(len(API))])
def test_api_refuses_bad_input_naming_it(tmp_path, call, error, names):
    with pytest.raises(error) as e:
        call(tmp_path)
    assert names.lower() in str(e.value).lower(), f"{e.value!r} does not name {names!r}"


def test_the_reliability_page_counts_the_table():
    text = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    n = len(CLI) + len(API)
    assert f"{n} bad inputs" in text and f"{n} bad inputs in one table ({len(CLI)} commands, {len(API)} Python calls)" \
        in readme, f"docs/reliability.md and README.md should say {n} bad inputs ({len(CLI)} commands, {len(API)} calls)"
