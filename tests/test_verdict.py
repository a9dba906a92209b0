"""The end-of-run verdict: a tiny run is judged (with a judge trained in seconds) and called untrained, the numbers go
to metrics.json; data without a judge is skipped with the reason; the hints follow the loss curve and the recipe;
"good" needs a trusted judge and both the guided and the unguided samples to clear their thresholds (run_verdict
with a fake judge, model and sampler: each branch in a second)."""
import json
from types import SimpleNamespace

import pytest
import torch

from ditlab.data import ImageDataset
from ditlab.eval import verdict as verdict_module
from ditlab.training import train
from ditlab.eval.verdict import GOOD, GOOD_UNGUIDED, JUDGE_MIN, assess, format_verdict, loss_trend, run_verdict

TINY = dict(model="DiT-Mi/8", model_args={"depth": 2, "hidden_size": 32, "num_heads": 2}, image_size=16, limit=128,
            batch_size=8, log_every=1, sample_every=0, sample_steps=3)


def test_a_tiny_run_ends_with_a_verdict_in_metrics_json(tmp_path, capsys):
    out = tmp_path / "run"
    train(**TINY, data="digits", steps=3, ckpt_every=3, out_dir=str(out))
    printed = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    v = m["verdict"]
    assert v["status"] in ("untrained", "under-trained") and "train(..., resume=True, steps=6)" in v["hint"]
    assert 0 <= v["accuracy_unguided"] <= 1 and v["fd_unguided"] >= 0 and v["judge_min"] == JUDGE_MIN
    assert v["judge_ok"] == (v["real_accuracy"] >= JUDGE_MIN) and v["cfg_scale"] == 4.0
    assert 0 <= v["accuracy"] <= 1 and v["fd"] >= 0 and v["n"] == 100 and v["sample_steps"] == 3 and v["sampler"] == "euler"
    assert v["chance"] == 0.1 and v["real_fd"] < v["noise_fd"] and 0 < v["real_accuracy"] <= 1
    assert v["good_accuracy_unguided"] == round(GOOD_UNGUIDED * v["real_accuracy"], 4) and v["judge_arch"] == "cnn"
    assert m["summary"]["steps"] == 3 and m["summary"]["recipe"] == "quick" and m["summary"]["cpu_seconds"] >= 0
    assert (out / "samples.png").exists()
    assert "(100 samples, 3 euler steps" in printed and v["hint"] in printed and "unguided" in printed


def test_no_judge_or_no_verdict_is_skipped_with_the_reason(tmp_path, capsys):
    train(**TINY, data="shapes", steps=1, ckpt_every=1, out_dir=str(tmp_path / "shapes"))
    v = json.loads((tmp_path / "shapes" / "metrics.json").read_text())["verdict"]
    assert v["status"] == "skipped" and "no judge for 'shapes'" in v["reason"]
    assert "verdict: skipped (no judge" in capsys.readouterr().out
    train(**TINY, data="digits", steps=1, ckpt_every=1, out_dir=str(tmp_path / "off"), verdict=False)
    m = json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert m["verdict"] == {"status": "skipped", "reason": "verdict=False"} and m["summary"]["steps"] == 1
    assert not (tmp_path / "off" / "samples.png").exists()


def _log(losses):
    return [dict(step=i + 1, loss=v) for i, v in enumerate(losses)]


def test_loss_trend_compares_the_last_two_fifths():
    assert loss_trend(_log([1.0] * 8 + [0.5] * 2)) == pytest.approx(0.5)
    assert loss_trend(_log([0.3] * 20)) == pytest.approx(0.0)
    assert loss_trend(_log([1.0] * 9)) is None  # too short to tell


@pytest.mark.parametrize("accuracy,trend,short_paper,steps,status,words", [
    (0.97, 0.0, False, 3000, "good", "good"),
    (0.97, 0.1, False, 3000, "good", "still falling"),
    (0.09, 0.0, True, 2000, "untrained", "--recipe quick"),     # the failure: paper recipe, short run
    (0.11, 0.2, False, 300, "untrained", "--resume --steps 600"),
    (0.60, 0.1, False, 1000, "under-trained", "still falling: train longer"),
    (0.60, 0.0, False, 9000, "under-trained", "larger model"),
    (0.60, None, False, 20, "under-trained", "too short"),
])
def test_assess_reads_accuracy_loss_and_recipe(accuracy, trend, short_paper, steps, status, words):
    got, hint = assess(accuracy, 0.1, 0.99, trend, steps, "DiT-Mi/4", short_paper, cli=True, unguided=0.8)
    assert got == status and words in hint


def test_good_needs_a_judge_that_clears_its_threshold_and_hints_speak_the_callers_language():
    """A weak judge (the first CIFAR-10 judge recognised ~66 % of real images) cannot certify samples: "uncertain"."""
    status, hint = assess(0.65, 0.1, 0.66, 0.0, 3000, "DiT-Mi/4", unguided=0.6)
    assert status == "uncertain"
    assert "judge recognises only 66% of real test images (below 85%)" in hint and "samples.png" in hint
    assert assess(0.95, 0.1, JUDGE_MIN, 0.0, 3000, "DiT-Mi/4", unguided=0.8)[0] == "good"  # at the threshold: trusted
    assert assess(0.95, 0.1, JUDGE_MIN - 1e-4, 0.0, 3000, "DiT-Mi/4", unguided=0.8)[0] == "uncertain"
    status, hint = assess(0.30, 0.1, 0.66, 0.3, 300, "DiT-Mi/4", cli=False, unguided=0.2)
    assert status == "under-trained" and "rough" in hint and "train(..., resume=True, steps=600)" in hint
    assert "--" not in hint


def test_good_needs_the_unguided_samples_to_clear_their_own_threshold():
    """The issue's MNIST runs: guided ~1.0, unguided ~0.8 of a 0.986 judge -> good; unguided 0.5 -> not good."""
    real = 0.986
    assert assess(0.99, 0.1, real, 0.0, 1500, "DiT-Mi/4", unguided=0.8)[0] == "good"
    bar = GOOD_UNGUIDED * real
    assert assess(0.99, 0.1, real, 0.0, 1500, "DiT-Mi/4", unguided=bar)[0] == "good"  # at the threshold
    status, hint = assess(0.99, 0.1, real, 0.1, 1500, "DiT-Mi/4", unguided=0.5)
    assert status == "under-trained" and f"unguided only 50% (good from {bar:.0%})" in hint
    assert "lean on guidance" in hint and "--resume --steps 3000" in hint  # the loss is still falling
    status, hint = assess(0.99, 0.1, real, 0.0, 1500, "DiT-Mi/4")  # unguided not judged: withheld too
    assert status == "uncertain" and "unguided ones were not judged" in hint
    status, hint = assess(0.99, 0.1, 0.7, 0.0, 1500, "DiT-Mi/4", unguided=0.2)  # weak judge and unguided failing
    assert status == "uncertain" and "unguided only 20%" in hint and "cannot certify" in hint


# ---------------------------------------------------------------------------------------------- run_verdict, faked

SIZE, CLASSES = 8, 10


def _images(labels):
    """Class c drawn as a flat image of gray level c: (N, 1, 8, 8) uint8."""
    return (torch.as_tensor(labels) * 25).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, SIZE, SIZE).contiguous()


class FakeJudge:
    """Reads the class off the gray level: right on every image drawn by _images."""
    channels, hw, image_size, num_classes, arch = 1, (SIZE, SIZE), SIZE, CLASSES, "fake"
    info = {"steps": 1}

    def embed(self, images, batch_size=500):
        level = ((images.float().mean((1, 2, 3)) + 1) * 127.5 / 25).round().clamp(0, CLASSES - 1).long()  # (N,)
        logits = torch.nn.functional.one_hot(level, CLASSES).float()  # (N, classes)
        feats = logits + 0.01 * torch.randn(len(level), CLASSES, generator=torch.Generator().manual_seed(len(level)))
        return feats, logits


def _fake_run(monkeypatch, tmp_path, label_noise=0.0, unguided_right=1.0):
    """run_verdict on fakes: the test labels wrong for a share `label_noise` (the judge's measured accuracy drops to
    1 - label_noise); guided samples always of the requested class, unguided ones for a share `unguided_right`."""
    n = 200
    labels = torch.arange(n) % CLASSES
    wrong = torch.arange(n) < int(label_noise * n)
    test = ImageDataset(_images(labels), torch.where(wrong, (labels + 1) % CLASSES, labels), list("0123456789"),
                        name="digits")

    def fake_sample(model, labels, cfg_scale, **kw):
        drawn = torch.as_tensor(labels)
        if cfg_scale == 1.0:
            k = int(unguided_right * len(drawn))
            drawn = torch.cat([drawn[:k], (drawn[k:] + 3) % CLASSES])
        images = _images(drawn).float() / 127.5 - 1
        return SimpleNamespace(images=images, labels=torch.as_tensor(labels), save=lambda path, nrow: None)

    monkeypatch.setattr(verdict_module, "get_judge", lambda *a, **k: FakeJudge())
    monkeypatch.setattr(verdict_module, "load_dataset", lambda *a, **k: test)
    monkeypatch.setattr(verdict_module, "sample", fake_sample)
    monkeypatch.setattr(verdict_module, "samplers_for", lambda model: ("euler",))
    model = SimpleNamespace(config=SimpleNamespace(input_size=SIZE, in_channels=1, num_classes=CLASSES,
                                                   has_null_class=True))
    cfg = SimpleNamespace(vae=None, data="digits", sample_steps=3, sample_cfg=4.0, progress=False, steps=1500,
                          model="DiT-Mi/4")
    log = [dict(step=i, loss=0.5) for i in range(50)]  # flat: the loss has flattened
    v = run_verdict(model, cfg, test, log, cli=True)
    verdict_module.write_metrics(tmp_path, dict(verdict=v))
    return json.loads((tmp_path / "metrics.json").read_text())["verdict"], format_verdict(v)


def test_run_verdict_good_when_judge_guided_and_unguided_all_clear(monkeypatch, tmp_path):
    v, text = _fake_run(monkeypatch, tmp_path)
    assert v["status"] == "good" and v["real_accuracy"] == 1.0 and v["judge_ok"] is True
    assert v["accuracy"] == 1.0 and v["accuracy_unguided"] == 1.0
    assert {"fd", "fd_unguided", "real_fd", "noise_fd", "judge_min", "good_accuracy", "good_accuracy_unguided",
            "judge_arch", "judge_steps", "cfg_scale", "n"} <= set(v)
    assert v["good_accuracy"] == GOOD and v["good_accuracy_unguided"] == GOOD_UNGUIDED and v["judge_min"] == JUDGE_MIN
    assert "verdict: good" in text and "recognises 1.00 of real test images (>= 0.85: trusted)" in text
    assert "1.000 guided (4), 1.000 unguided" in text and "good from 0.90 guided and 0.75 unguided" in text


def test_run_verdict_weak_judge_withholds_good(monkeypatch, tmp_path):
    v, text = _fake_run(monkeypatch, tmp_path, label_noise=0.4)  # the judge is right on 60 % of the test images
    assert v["status"] == "uncertain" and v["real_accuracy"] == 0.6 and v["judge_ok"] is False
    assert v["accuracy"] == 1.0 and v["accuracy_unguided"] == 1.0  # the samples look perfect, yet: not "good"
    assert "judge recognises only 60% of real test images (below 85%)" in v["hint"]
    assert "verdict: uncertain" in text and "(< 0.85: weak)" in text


def test_run_verdict_unguided_failing_withholds_good(monkeypatch, tmp_path):
    v, text = _fake_run(monkeypatch, tmp_path, unguided_right=0.5)
    assert v["status"] == "under-trained" and v["accuracy"] == 1.0 and v["accuracy_unguided"] == 0.5
    assert "unguided only 50% (good from 75%)" in v["hint"] and "larger model" in v["hint"]
    assert v["fd_unguided"] >= 0 and v["fd"] >= 0
    assert "verdict: under-trained" in text and "1.000 guided (4), 0.500 unguided" in text


def test_format_verdict_shows_the_expected_range():
    v = dict(status="good", accuracy=0.95, accuracy_unguided=0.7, fd=50.0, fd_unguided=80.0, n=100, sampler="ddim",
             sample_steps=25, cfg_scale=4.0, chance=0.1, real_accuracy=0.99, judge_min=0.85, judge_ok=True,
             good_accuracy=0.891, good_accuracy_unguided=0.7425, real_fd=20.0, noise_fd=900.0, hint="good: ...", judge="mnist")
    text = format_verdict(v)
    assert "chance 0.10 ... real images 0.99" in text and "real images 20.0 ... noise 900.0" in text
    assert "0.950 guided (4), 0.700 unguided" in text and "(>= 0.85: trusted)" in text
    assert "good from 0.89 guided and 0.74 unguided" in text


def test_a_flattened_loss_suggests_a_bigger_model_than_the_one_that_ran():
    from ditlab.eval.verdict import bigger

    assert [bigger(m) for m in ("DiT-Mi/2", "DiT-Nano/4", "DiT-S/8", "DiT-XL/2", "custom")] == [
        "DiT-Ti/2", "DiT-Mi/4", "DiT-B/8", "DiT-XL/1", "DiT-Mi/2"]
    status, hint = assess(0.3, 0.1, 0.87, 0.0, 3000, "DiT-Mi/2", False, cli=True, unguided=0.2)
    assert "--model DiT-Ti/2" in hint and "--model DiT-Mi/2" not in hint
    assert "--recipe" not in hint  # the run had the quick recipe already (it used to be told to try it)
