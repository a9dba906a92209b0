"""The end-of-run verdict: a tiny run is judged (with a judge trained in seconds) and called untrained, the numbers go
to metrics.json; data without a judge is skipped with the reason; the hints follow the loss curve and the recipe."""
import json

import pytest

from ditlab.training import train
from ditlab.eval.verdict import JUDGE_MIN, assess, format_verdict, loss_trend

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
    got, hint = assess(accuracy, 0.1, 0.99, trend, steps, "DiT-Mi/4", short_paper, cli=True)
    assert got == status and words in hint


def test_good_needs_a_judge_that_clears_its_threshold_and_hints_speak_the_callers_language():
    """CIFAR-10's judge recognises ~66 % of real images: samples it scores like real ones are "uncertain"."""
    assert assess(0.65, 0.1, 0.66, 0.0, 3000, "DiT-Mi/4")[0] == "uncertain"
    status, hint = assess(0.65, 0.1, 0.66, 0.0, 3000, "DiT-Mi/4")
    assert "judge recognises only 66% of real test images (below 85%)" in hint and "samples.png" in hint
    assert assess(0.95, 0.1, JUDGE_MIN, 0.0, 3000, "DiT-Mi/4")[0] == "good"  # at the threshold: trusted
    status, hint = assess(0.30, 0.1, 0.66, 0.3, 300, "DiT-Mi/4", cli=False)
    assert status == "under-trained" and "rough" in hint and "train(..., resume=True, steps=600)" in hint
    assert "--" not in hint


def test_format_verdict_shows_the_expected_range():
    v = dict(status="good", accuracy=0.95, accuracy_unguided=0.7, fd=50.0, fd_unguided=80.0, n=100, sampler="ddim",
             sample_steps=25, cfg_scale=4.0, chance=0.1, real_accuracy=0.99, judge_min=0.85, judge_ok=True,
             good_accuracy=0.891, real_fd=20.0, noise_fd=900.0, hint="good: ...", judge="mnist")
    text = format_verdict(v)
    assert "chance 0.10 ... real images 0.99" in text and "real images 20.0 ... noise 900.0" in text
    assert "0.950 guided (4), 0.700 unguided" in text and "(>= 0.85: trusted)" in text
