"""`ditlab demo` in smoke mode: the whole pipeline (train, sample, judge, figures, metrics) in seconds."""
import json

from ditlab.cli import main


def test_demo_smoke_writes_samples_curve_and_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    main(["demo", "--smoke", "--out-dir", str(out)])
    for name in ("samples.png", "loss_curve.png", "metrics.json", "ema.safetensors", "log.csv"):
        assert (out / name).exists(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_samples"] == 20 and 0 <= m["accuracy"] <= 1 and m["fd"] >= 0 and m["train_steps"] == 10
    printed = capsys.readouterr().out
    assert "conditional accuracy" in printed and "samples.png" in printed
