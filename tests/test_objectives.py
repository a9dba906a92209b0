"""The objective comparison (`ditlab objectives`): smoke run, CSV and figures, reuse of finished and judged
runs, the docs table (docs/studies.md), and the committed results."""
import pytest
from conftest import ROOT

from ditlab.cli import main
from ditlab.studies import objectives
from ditlab.studies.objectives import RECIPES, markdown_table, read_csv, run_objectives, summarize

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache (built-in digits, smoke judge) for this module's runs."""
    return tmp_path_factory.mktemp("cache")


SMOKE = dict(steps=2, nfes=(2, 4), samples_per_class=1, model_args={"depth": 1}, progress=False,
             judge_kwargs={"smoke": True})


def test_smoke_run_writes_csv_and_figures_and_reuses_judged_runs(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("DITLAB_CACHE", str(cache))
    rows = run_objectives(runs=("a", "d"), out_dir=tmp_path, **SMOKE)
    # a: DDIM and DDPM at NFE 2 and 4; d: Euler at 2 and 4, Heun (2 evaluations per step) at 2 and 4; each
    # without guidance and with guidance 4
    assert [(r["run"], r["sampler"], r["nfe"], r["sample_steps"]) for r in rows[::2]] == [
        ("a", "ddim", 2, 2), ("a", "ddim", 4, 4), ("a", "ddpm", 2, 2), ("a", "ddpm", 4, 4),
        ("d", "euler", 2, 2), ("d", "euler", 4, 4), ("d", "heun", 2, 1), ("d", "heun", 4, 2)]
    assert [r["cfg_scale"] for r in rows] == [1.0, 4.0] * 8
    assert all(0 <= r["accuracy"] <= 1 and r["fd"] > 0 and r["n_samples"] == 10 for r in rows)
    for name in ("objectives.csv", "objectives.png", "objectives_grids.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert read_csv(tmp_path / "objectives.csv") == [{**r, "params": int(r["params"])} for r in rows]
    d = [r for r in rows if r["run"] == "d"][0]
    assert d["params"] != rows[0]["params"]  # (d) has the modern block

    calls = []
    monkeypatch.setattr(objectives, "evaluate", lambda *a, **k: calls.append(1) or {"accuracy": 0, "fd": 1})
    again = run_objectives(runs=("a", "d"), out_dir=tmp_path, **SMOKE)  # finished and judged: nothing to redo
    assert not calls and [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    run_objectives(runs=("a",), out_dir=tmp_path, **{**SMOKE, "nfes": (3, 4)})  # only what is new is judged
    assert len(calls) == 2 * 2  # NFE 3 for DDIM and DDPM, at both scales
    with pytest.raises(ValueError, match="more than steps"):
        run_objectives(runs=("a",), out_dir=tmp_path, **{**SMOKE, "steps": 1})


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="runs must be"):
        run_objectives(runs=("e",), out_dir=tmp_path)
    with pytest.raises(ValueError, match="nfes must be"):
        run_objectives(runs=("a",), nfes=(0,), out_dir=tmp_path)
    with pytest.raises(ValueError, match="cfg_scales must be"):
        run_objectives(runs=("a",), cfg_scales=(0.5,), out_dir=tmp_path)


def test_summary_table_finds_the_fewest_nfe_reaching_the_threshold():
    rows = [dict(run=k, label=RECIPES[k]["label"], sampler=s, nfe=n, cfg_scale=g, accuracy=acc, fd=fd)
            for k, s, n, g, acc, fd in [
                ("a", "ddim", 4, 4.0, 0.5, 90.0), ("a", "ddim", 8, 4.0, 0.96, 40.0),
                ("a", "ddim", 4, 1.0, 0.97, 80.0), ("a", "ddim", 8, 1.0, 0.5, 30.0),  # unguided: FD only
                ("b", "euler", 4, 4.0, 0.97, 30.0), ("b", "euler", 8, 4.0, 0.99, 20.0),
                ("b", "euler", 4, 1.0, 0.7, 15.0), ("b", "euler", 8, 1.0, 0.8, 12.0)]]
    s = {r["run"]: r for r in summarize(rows)}
    assert s["a"]["min_nfe"] == 8 and s["b"]["min_nfe"] == 4 and s["a"]["fd_at"] == 30.0 and s["a"]["acc_at"] == 0.96
    table = markdown_table(rows)
    assert "(guidance 4) | accuracy at 8 NFE (guidance 4) | FD at 8 NFE (no guidance) |" in table
    assert "| (b) | rectified flow, velocity | euler | 4 | 0.990 | 12.0 | 12.0 |" in table


def test_cli_smoke(tmp_path, monkeypatch, capsys, cache):
    monkeypatch.setenv("DITLAB_CACHE", str(cache))
    main(["objectives", "--smoke", "--runs", "b", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| (b) | rectified flow, velocity | euler |" in out and (tmp_path / "objectives.csv").exists()


def test_committed_results_cover_every_recipe_and_nfe():
    rows = read_csv(ROOT / "data" / "objectives.csv")
    assert {r["run"] for r in rows} == set(RECIPES)
    for key, recipe in RECIPES.items():
        for scale in (1.0, 4.0):
            first = [r for r in rows if r["run"] == key and r["sampler"] == recipe["samplers"][0]
                     and r["cfg_scale"] == scale]
            assert sorted(r["nfe"] for r in first) == [4, 8, 16, 32, 64]
    assert len({(r["train_steps"], r["batch_size"], r["model"]) for r in rows}) == 1  # equal steps and batch
    assert (ROOT / "data" / "objectives.png").exists() and (ROOT / "data" / "objectives_grids.png").exists()
    page = (ROOT / "docs" / "studies.md").read_text()  # the docs page of the studies
    assert markdown_table(rows) in page
