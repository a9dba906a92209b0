"""`ditlab playground`: the sampling playground, the denoising scrubber and the scaling explorer of notebooks 10 and
10 as a web app for a class or a projector: Voilà serves a notebook's widgets without its code cells.

Writes a one-cell notebook (`widgets.demo_app`) into a temporary folder, starts Voilà on it on 127.0.0.1, prints
the URL once the page answers, and stops Voilà (and its kernel) on Ctrl-C. Voilà is the `app` extra:
`pip install -e ".[app]"`.
"""
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .checkpoint import resolve_checkpoint, shipped_names
from .checks import integer, refuse

EXTRA = "app"


def check_voila() -> None:
    """A clear error naming the extra when Voilà is not installed."""
    refuse("ditlab playground needs Voilà", [(importlib.util.find_spec("voila") is None, f"in the '{EXTRA}' extra: "
           f"pip install -e \".[{EXTRA}]\" (in the repository) or pip install \"ditlab[{EXTRA}]\"")],
           ModuleNotFoundError)


def app_notebook(model: str | None = None, n: int = 20, steps: int = 25, fallback_steps: int | None = None) -> dict:
    """The notebook Voilà renders (nbformat 4 as a dict): a title and the three widgets in tabs."""
    n, steps = integer("n", n, min=1), integer("steps", steps, min=1)
    code = ("from ditlab.teach import widgets\n"
            f"widgets.demo_app(model={model!r}, n={n}, steps={steps}, fallback_steps={fallback_steps!r})")
    title = ("# ditlab · Diffusion Transformers playground\n"
             "Sample the shipped DiTs (class, guidance scale, steps, sampler, seed), watch one sample form step by "
             "step, and explore the paper's model sizes, patch sizes and Gflops.")
    cell = dict(metadata={}, id="app")
    return dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name="python3", display_name="Python 3",
                                                                           language="python")),
                cells=[dict(cell, cell_type="markdown", id="title", source=title),
                       dict(cell, cell_type="code", source=code, outputs=[], execution_count=None)])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_for(host: str, port: int, proc: subprocess.Popen, timeout: float) -> None:
    """Until Voilà listens (a GET of the page itself would start a kernel and run the app)."""
    end = time.monotonic() + timeout
    url = f"http://{host}:{port}/"
    while time.monotonic() < end:
        refuse("Voilà", [(proc.poll() is not None,
                          f"exited with code {proc.returncode} before serving {url}; its log: {proc.log}")], OSError)
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise OSError(f"Voilà did not answer at {url} within {timeout:.0f} s; its log: {proc.log}")


def start(model: str | None = None, port: int = 8866, host: str = "127.0.0.1", n: int = 20, steps: int = 25,
          fallback_steps: int | None = None, timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Start Voilà on the app notebook; returns (process, URL) once the server answers. `port` 0: a free one; a
    port in use is an error (Voilà would otherwise move to another port than the printed URL's)."""
    port = integer("port", port, min=0, max=65535)
    if model is not None and shipped_names() and model not in shipped_names():
        resolve_checkpoint(model)  # a typo is told here, with what exists and the closest name, not in the page
    if port:
        with socket.socket() as s:
            refuse("", [(s.connect_ex((host, port)) == 0, f"port {port} on {host} is in use (another ditlab "
                                                          "playground?): pass --port 0 for a free one")], OSError)
    check_voila()
    folder = Path(tempfile.mkdtemp(prefix="ditlab-playground-"))
    (folder / "playground.ipynb").write_text(json.dumps(app_notebook(model, n, steps, fallback_steps)))
    port = port or free_port(host)
    url = f"http://{host}:{port}/"
    with open(folder / "voila.log", "w") as log:  # Voilà's own messages, for when something goes wrong
        cmd = [sys.executable, "-m", "voila", "playground.ipynb", f"--port={port}", "--no-browser",
               f"--Voila.ip={host}", "--Voila.port_retries=0", "--theme=light", "--show_tracebacks=True"]
        proc = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = folder / "voila.log"
    try:
        _wait_for(host, port, proc, timeout)
    except BaseException:
        stop(proc)
        raise
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    """Stop Voilà and the kernels it started (one process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def serve(**kwargs) -> None:
    """`ditlab playground`: start, print the URL, serve until Ctrl-C."""
    proc, url = start(**kwargs)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` stops Voilà too (through the finally below)
    print(f"ditlab playground: open {url} in a browser (the first page load samples once; Ctrl-C stops)", flush=True)
    try:
        proc.wait()
    finally:
        stop(proc)
    refuse("Voilà", [(proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT),
                      f"stopped with code {proc.returncode}; its log: {proc.log}")], OSError)
