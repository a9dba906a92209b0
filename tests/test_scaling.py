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
    assert "spearman_gflops_fd" in capsys.readouterr().out
    # a second call reuses the finished runs (resumed at their last step): same models, same judgement
    ckpt = tmp_path / "s" / "DiT-Nano_4" / "checkpoint.safetensors"
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
