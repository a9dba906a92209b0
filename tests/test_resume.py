"""`resume=True` means it: new lr / weight decay are applied from the checkpoint's step (optimizer, log.csv,
config.json and the checkpoint agree) and reported; changes to the model, the data or the order of data and
noise (batch size, seed) are refused before any data is loaded."""
import csv
import json

import pytest
import torch
from safetensors import safe_open
from test_train import TINY

from ditlab.data import ImageDataset, load_dataset
from ditlab.training import train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=128)


@pytest.fixture
def run(tmp_path, digits):
    d = tmp_path / "run"
    train(**TINY, steps=3, ckpt_every=3, out_dir=str(d), dataset=digits)
    return d


def _meta(path):
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_new_lr_and_weight_decay_are_applied_and_reported(run, digits, tmp_path, capsys):
    capsys.readouterr()
    r = train(**{**TINY, "lr": 1e-5}, weight_decay=0.5, steps=5, ckpt_every=3, out_dir=str(run), resume=True,
              dataset=digits)
    printed = capsys.readouterr().out
    assert f"resuming {run} from step 3; from step 3 on: steps 3 -> 5, lr 0.001 -> 1e-05, weight_decay 0.0 -> 0.5" \
        in printed
    meta = _meta(run / "checkpoint.safetensors")  # the optimizer's own param groups, as saved
    assert [(g["lr"], g["weight_decay"]) for g in json.loads(meta["param_groups"])] == [(1e-5, 0.5)]
    train_cfg = json.loads(meta["train_config"])
    assert (train_cfg["lr"], train_cfg["weight_decay"]) == (1e-5, 0.5)
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr"] == 1e-5
    assert config["resumes"] == [dict(step=3, changed=dict(steps=[3, 5], lr=[1e-3, 1e-5], weight_decay=[0.0, 0.5]))]
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [(int(x["step"]), float(x["lr"])) for x in rows] == [(1, 1e-3), (2, 1e-3), (3, 1e-3), (4, 1e-5), (5, 1e-5)]
    # and they are really used: the same resume with the old values ends elsewhere
    other = tmp_path / "other"
    train(**TINY, steps=3, ckpt_every=3, out_dir=str(other), dataset=digits)
    same = train(**TINY, steps=5, ckpt_every=3, out_dir=str(other), resume=True, dataset=digits)
    assert not torch.equal(same["model"].final_layer.linear.weight, r["model"].final_layer.linear.weight)
    assert json.loads((other / "config.json").read_text())["resumes"] == [dict(step=3, changed=dict(steps=[3, 5]))]


@pytest.mark.parametrize("change, match", [
    (dict(batch_size=16), "batch_size 8 -> 16"),
    (dict(seed=1), "seed 0 -> 1"),
    (dict(limit=64), "limit 128 -> 64"),
    (dict(data="shapes"), "data 'digits' -> 'shapes'"),
    (dict(class_dropout_prob=0.0), "class_dropout_prob 0.1 -> 0.0"),
    (dict(model="DiT-Mi/4"), "model 'DiT-Mi/8' -> 'DiT-Mi/4'"),
])
def test_changes_to_model_data_or_order_are_refused_before_loading_data(run, monkeypatch, change, match):
    from ditlab.training import loop

    monkeypatch.setattr(loop, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    with pytest.raises(ValueError, match=f"cannot resume .*{match} would change the run's model, data or the order"):
        train(**{**TINY, **change}, steps=5, out_dir=str(run), resume=True)
    assert _meta(run / "checkpoint.safetensors")["step"] == "3"


def test_other_data_under_the_same_name_and_fewer_steps_are_refused(run, digits):
    flipped = ImageDataset(digits.images.flip(-1), digits.labels, digits.classes, name="digits")
    with pytest.raises(ValueError, match="the training data changed"):
        train(**TINY, steps=5, out_dir=str(run), resume=True, dataset=flipped)
    with pytest.raises(ValueError, match="with steps=2: its checkpoint is at step 3; pass steps=3 or more"):
        train(**TINY, steps=2, out_dir=str(run), resume=True, dataset=digits)
    assert train(**TINY, steps=3, out_dir=str(run), resume=True, dataset=digits)["step"] == 3  # nothing left to do
