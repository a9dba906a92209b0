"""`ditlab playground` without a browser: the app notebook, the missing-extra error, bad options. The server itself is
opened in a real browser by tests/test_browser.py."""
import importlib.util

import nbformat
import pytest

from ditlab import playground
from ditlab.cli import main


def test_app_notebook_is_one_widget_cell():
    nb = nbformat.from_dict(playground.app_notebook("digits-p2", n=4, steps=3))
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code == ["from ditlab.teach import widgets\n"
                    "widgets.demo_app(model='digits-p2', n=4, steps=3, fallback_steps=None)"]
    assert nb.metadata.kernelspec.name == "python3"
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        playground.app_notebook(steps=0)


def test_missing_app_extra_is_a_clear_error(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "voila" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"'app' extra: pip install -e \"\.\[app\]\""):
        playground.start()
    with pytest.raises(SystemExit) as e:
        main(["playground", "--port", "0"])
    assert "ditlab playground: error:" in str(e.value) and "[app]" in str(e.value)


def test_bad_port_and_model_come_before_voila():
    with pytest.raises(ValueError, match=r"port must be an int in \[0, 65535\], got 70000"):
        playground.start(port=70000)
    with pytest.raises(FileNotFoundError, match="Did you mean 'digits-p4'"):
        playground.start(model="digit-p4", port=0)


def test_a_port_in_use_is_an_error_not_another_port():
    import socket

    with socket.socket() as s:  # checked before Voilà is looked for
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OSError, match="is in use"):
            playground.start(port=s.getsockname()[1])
