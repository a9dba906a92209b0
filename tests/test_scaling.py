"""The scaling study: a smoke run checks the pipeline and the CSV (not the trend); the summary statistics."""
import pytest

from ditlab.cli import main
from ditlab.studies.scaling import FIELDS, read_csv, spearman, summarize


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 7, 5, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)


def test_summary_checks_both_findings():
    rows = [dict(size="A", patch=p, gflops=g, fd=f) for p, g, f in [(8, 0.1, 30), (4, 0.4, 20), (2, 1.6, 10)]]
    rows += [dict(size="B", patch=p, gflops=g, fd=f) for p, g, f in [(8, 0.5, 25), (4, 2.0, 26), (2, 8.0, 5)]]
    s = summarize(rows)
    assert s["smaller_patch_better"] == {"A": True, "B": False}
    assert -1 < s["spearman_gflops_fd"] < 0 and s["n_runs"] == 6
    assert summarize(rows[:3])["spearman_gflops_fd"] == pytest.approx(-1.0)


def test_smoke_study_writes_csv_and_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "cache"))
    main(["scaling", "--smoke", "--sizes", "Nano", "--patches", "4,8", "--batch-size", "8",
          "--out-dir", str(tmp_path / "s")])
    rows = read_csv(tmp_path / "s" / "scaling.csv")
    assert [r["model"] for r in rows] == ["DiT-Nano/4", "DiT-Nano/8"]
    assert list(rows[0]) == FIELDS
    assert rows[0]["tokens"] == 16 and rows[1]["tokens"] == 4 and rows[0]["gflops"] > rows[1]["gflops"]
    assert all(r["fd"] >= 0 and 0 <= r["accuracy"] <= 1 and r["steps"] == 3 for r in rows)
    assert (tmp_path / "s" / "scaling.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "spearman_gflops_fd" in printed
    assert "[1/2] DiT-Nano/4: 3 of 3 steps to train, about " in printed  # the time estimate before each model
    # a second call reuses the finished runs (resumed at their last step): same models, same judgement
    ckpt = tmp_path / "s" / "3-steps" / "DiT-Nano_4" / "checkpoint.safetensors"
    mtime = ckpt.stat().st_mtime_ns
    main(["scaling", "--smoke", "--sizes", "Nano", "--patches", "4,8", "--batch-size", "8",
          "--out-dir", str(tmp_path / "s")])
    again = read_csv(tmp_path / "s" / "scaling.csv")
    assert ckpt.stat().st_mtime_ns == mtime
    for a, b in zip(rows, again):
        assert (a["fd"], a["accuracy"], a["final_loss"]) == (b["fd"], b["accuracy"], b["final_loss"])


def test_bad_patch_size(tmp_path):
    from ditlab.studies.scaling import run_scaling

    with pytest.raises(ValueError, match="not divisible by patch size 3"):
        run_scaling(patches=(3,), image_size=16, out_dir=str(tmp_path))


def test_fewer_steps_after_a_longer_run_is_a_new_study(tmp_path, monkeypatch):
    """Lowering the steps after a (finished or interrupted) longer study trains in a folder of its own instead of
    refusing; the longer run is kept for later."""
    from ditlab.studies.scaling import run_scaling, study_dir

    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "cache"))
    kw = dict(sizes=("Nano",), patches=(8,), batch_size=8, samples_per_class=1, sample_steps=2,
              out_dir=str(tmp_path / "s"), judge_kwargs={"smoke": True}, progress=False)
    run_scaling(steps=4, **kw)
    rows = run_scaling(steps=2, **kw)
    assert rows[0]["steps"] == 2
    assert (study_dir(tmp_path / "s", 4) / "DiT-Nano_8" / "checkpoint.safetensors").exists()
    assert read_csv(tmp_path / "s" / "scaling.csv")[0]["steps"] == 2


def test_step_seconds_is_a_positive_time():
    from ditlab.data import load_dataset
    from ditlab.studies.scaling import step_seconds

    digits = load_dataset("digits", split="train", image_size=16)
    assert 0 < step_seconds("DiT-Nano/8", digits, batch_size=8) < 10


def test_trend_sentence_says_only_what_the_rows_show():
    from ditlab.studies.scaling import trend_sentence

    good = [dict(model=f"DiT-A/{p}", size="A", patch=p, gflops=g, fd=f, accuracy=a, steps=10)
            for p, g, f, a in [(8, 0.1, 300, 0.3), (4, 0.4, 200, 0.6), (2, 1.6, 100, 0.9)]]
    flat = [dict(r, fd=f, accuracy=0.1) for r, f in zip(good, (300, 100, 200))]
    said = trend_sentence(good)
    assert said.startswith("Your run shows the paper's trend") and "-1.00 over 3 models" in said
    assert "DiT-A/2 (FD 100.0" in said and "each smaller patch was better" in said and "chance" not in said
    said = trend_sentence(flat, reference=good)
    assert said.startswith("Your run is too short") and "-0.50 over 3 models" in said
    assert "3 of 3 models are near chance" in said and "(10 steps each, 3 models) shows it: Spearman -1.00" in said
    assert "nan" not in trend_sentence(good[:1]) and "no rank correlation from 1 model" in trend_sentence(good[:1])
