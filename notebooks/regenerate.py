"""Regenerate the committed notebooks, so that GitHub and nbviewer show every figure, table and sample grid.

    python notebooks/regenerate.py              # every notebook: a full CPU run (see the README for the time)
    python notebooks/regenerate.py 03 04        # a subset, by number or by file name
    python notebooks/regenerate.py --header     # only re-apply the Colab badge and install cell (no run)
    python notebooks/regenerate.py --check      # check the committed notebooks, as the tests do
    python notebooks/regenerate.py --student OUT_DIR   # write the student versions (no run), e.g. for a class

Each notebook gets the canonical header (its Colab badge and the install cell, both pointing at the one
repository URL in pyproject.toml), loses its outputs, runs top to bottom in a fresh kernel of this Python
(cwd notebooks/, offline, full mode), has machine-specific paths and progress bars scrubbed from its outputs
and large images re-encoded, is checked (`problems`), and only then is written back. A notebook whose run
fails is left as it was and the command exits with status 1. Running it again gives the same notebooks up to
timings; it works on notebooks with or without outputs. A regenerated notebook's student version (its solution
regions blanked, no outputs: `ditlab.teach.student`) is written to notebooks/student/, which the README's
student Colab links open.

A notebook that cannot run in full on a CPU (hours of GPU training) declares it in its metadata,
`"ditlab": {"regenerate": "smoke", "reason": "..."}`: it is then run in smoke mode and its first markdown cell
says so under the badge (SMOKE_NOTE). Remove the key when regenerating it on a machine that can run it in full.
"""
import argparse
import base64
import io
import os
import re
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from PIL import Image
from traitlets import default

from ditlab.teach.student import student_notebook

NB_DIR = Path(__file__).resolve().parent
ROOT = NB_DIR.parent
REPO_URL = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
COLAB_EXTRAS = "hf,flops,flow"  # what the notebooks use beyond the core that Colab may lack; never [lab] (see README)
MAX_BYTES = 2 * 2**20  # per notebook, outputs included
BIG_PNG = 60_000  # bytes: larger figures are re-encoded with a 256-colour palette when that is smaller
INSTALL_MARK = "# Colab only: install ditlab"
WIDGET = "application/vnd.jupyter.widget-view+json"
PREVIEW_MARK = "static preview follows"  # ditlab.teach.widgets.Panel's text for its widget output
BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
SMOKE_NOTE = ("*The outputs stored with this notebook come from a short smoke run on a CPU (`DITLAB_SMOKE=1`): "
              "{reason}. Run it yourself for real numbers.*")
NOTE = re.compile(r"\n\n\*The outputs stored with this notebook come from [^\n]*\*")


def smoke_only(nb) -> str | None:
    """The reason a notebook is regenerated in smoke mode (its metadata "ditlab" entry), else None."""
    meta = nb.metadata.get("ditlab", {})
    return meta.get("reason", "it cannot run in full on a CPU") if meta.get("regenerate") == "smoke" else None


# ---- the canonical header: Colab badge and install cell ---------------------------------------------------
def badge(name: str) -> str:
    github = REPO_URL.removeprefix("https://github.com/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{github}/blob/main/notebooks/{name})")


def install_cell_source() -> str:
    """Colab has torch, numpy, matplotlib, ipywidgets and its own Jupyter server: pip keeps what is installed
    and satisfies the requirements, so this adds only ditlab and what Colab lacks (no [lab] extra)."""
    return (f"{INSTALL_MARK} (locally: `pip install -e \".[lab]\"` in the repository, see its README)\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    %pip install -q \"ditlab[{COLAB_EXTRAS}] @ git+{REPO_URL}\"")


def apply_header(nb, name: str):
    """Give `nb` the canonical badge (in its first markdown cell, under the title; followed by SMOKE_NOTE for a
    smoke-only notebook) and install cell (the first code cell marked INSTALL_MARK, else a new one after the
    first markdown cell). Idempotent."""
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    if BADGE.search(first.source):
        first.source = BADGE.sub(lambda _: badge(name), first.source, count=1)
    else:
        title, _, rest = first.source.partition("\n")
        first.source = f"{title}\n\n{badge(name)}\n{rest}" if title.startswith("#") else f"{badge(name)}\n\n{first.source}"
    first.source = NOTE.sub("", first.source)
    if smoke_only(nb):
        first.source = first.source.replace(badge(name), f"{badge(name)}\n\n{SMOKE_NOTE.format(reason=smoke_only(nb))}", 1)
    cell = next((c for c in nb.cells if c.cell_type == "code" and c.source.startswith(INSTALL_MARK)), None)
    if cell is None:
        cell = nbformat.v4.new_code_cell()
        nb.cells.insert(nb.cells.index(first) + 1, cell)
    cell.source = install_cell_source()
    return nb


def strip(nb):
    """No outputs, execution counts, timings or widget state: the form the smoke tests run."""
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
        c.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


# ---- running --------------------------------------------------------------------------------------------
class ThisPythonKernel(AsyncKernelManager):
    """The `python3` kernel of this very interpreter (ipykernel's own spec), whatever kernelspecs are installed."""

    @default("kernel_spec_manager")
    def _only_the_native_kernel(self):
        return KernelSpecManager(kernel_dirs=[])


def execute(nb, smoke: bool, timeout: int | None = None, cwd: Path = NB_DIR, bars: bool = True):
    """Run `nb` in place in a fresh kernel of this very Python (not whatever `python3` kernelspec is
    registered), offline; DITLAB_SMOKE=1 if `smoke`; no tqdm bars unless `bars`. Raises CellExecutionError at
    the first failing cell."""
    env = {**os.environ, "DITLAB_SMOKE": "1" if smoke else "0", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("MPLBACKEND", None)  # the notebooks draw inline
    if not bars:
        env["TQDM_DISABLE"] = "1"  # a committed progress bar is noise
    client = NotebookClient(nb, kernel_name="python3", kernel_manager_class=ThisPythonKernel, timeout=timeout,
                            record_timing=False, resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    return nb


# ---- cleaning the outputs -------------------------------------------------------------------------------
def _replacements() -> list[tuple[str, str]]:
    cache = os.environ.get("DITLAB_CACHE")
    pairs = [(str(Path(cache).resolve()), "~/.cache/ditlab")] if cache else []
    pairs += [(p, "site-packages") for p in sys.path if p.endswith("site-packages")]
    pairs += [(sys.prefix, "<python>"), (str(ROOT), "ditlab"), (str(Path.home()), "~")]
    return sorted({(a, b) for a, b in pairs if len(a) > 1}, key=lambda ab: -len(ab[0]))


_TMP = re.compile(re.escape(tempfile.gettempdir()) + r"/[\w.-]+")


def _texts(nb):
    """(container, key) of every text in the outputs: stream text and text-like display data."""
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.output_type == "stream":
                yield o, "text"
            for mime in o.get("data", {}):
                if mime.startswith("text/") or mime == "application/json":
                    yield o.data, mime


def _bare_widget(o) -> bool:
    """A widget output with nothing to show without a kernel (a tqdm bar stuck at 0 %), unlike a ditlab Panel,
    whose static preview follows it."""
    return WIDGET in o.get("data", {}) and PREVIEW_MARK not in o.data.get("text/plain", "")


def scrub(nb):
    """Machine-specific paths in outputs -> neutral ones: the cache -> ~/.cache/ditlab, the checkout -> ditlab,
    site-packages, home -> ~, temporary folders -> <tmp>; bare widget outputs (progress bars) and the widget state
    dropped."""
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = [o for o in c.outputs if not _bare_widget(o)]
    nb.metadata.pop("widgets", None)  # widget state: large, and only a kernel brings the widgets back to life
    pairs = _replacements()
    for box, key in _texts(nb):
        text = box[key] if isinstance(box[key], str) else "".join(box[key])
        for a, b in pairs:
            text = text.replace(a, b)
        box[key] = _TMP.sub("<tmp>", text)
    return nb


def _shrink(png: bytes) -> bytes:
    img = Image.open(io.BytesIO(png))
    buf = io.BytesIO()
    img.convert("RGB").quantize(256).save(buf, format="PNG", optimize=True)
    return buf.getvalue() if buf.tell() < len(png) else png


def shrink_images(nb):
    """Re-encode PNGs over BIG_PNG bytes with a 256-colour palette where that is smaller (figures are flat
    colours and grey digits: no visible change)."""
    for c in nb.cells:
        for o in c.get("outputs", []):
            if "image/png" in o.get("data", {}) and len(o.data["image/png"]) > BIG_PNG * 4 / 3:
                o.data["image/png"] = base64.b64encode(_shrink(base64.b64decode(o.data["image/png"]))).decode()
    return nb


# ---- checking a committed notebook ----------------------------------------------------------------------
MACHINE_PATH = re.compile(r"(?<![\w~<>.-])/(?:home|Users|root|work|tmp|private|var|opt|mnt|srv|content|scratch)/"
                          r"|\b[A-Z]:\\\\?Users")


def problems(nb, name: str, size: int) -> list[str]:
    """What keeps `nb` (the file `name`, `size` bytes) from being committed: empty list when it is fine."""
    out = []
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    if not any(c.outputs for c in code):
        out.append("no outputs: run `python notebooks/regenerate.py` first")
    counts = [c.execution_count for c in code]
    if counts != list(range(1, len(code) + 1)):
        out.append(f"execution counts not 1..{len(code)} in order: {counts}")
    if size > MAX_BYTES:
        out.append(f"{size / 2**20:.2f} MB > {MAX_BYTES / 2**20:.0f} MB")
    for i, c in enumerate(nb.cells):
        outs = c.get("outputs", [])
        for j, o in enumerate(outs):
            if o.output_type == "error":
                out.append(f"cell {i}: error output {o.ename}: {o.evalue}")
            if o.output_type == "stream" and o.name == "stderr" and "Traceback" in o.text:
                out.append(f"cell {i}: a traceback on stderr")
            if {"image/jpeg", "image/svg+xml"} & set(o.get("data", {})):
                out.append(f"cell {i}: an image that is not PNG")
            if _bare_widget(o):
                out.append(f"cell {i}: a widget output with nothing to show without a kernel (a progress bar?)")
            plain = o.get("data", {}).get("text/plain", "")
            if WIDGET in o.get("data", {}) and PREVIEW_MARK in plain and \
                    not (j + 1 < len(outs) and "image/png" in outs[j + 1].get("data", {})):
                out.append(f"cell {i}: a widget without its static preview beneath")
    for box, key in _texts(nb):
        text = box[key] if isinstance(box[key], str) else "".join(box[key])
        hits = MACHINE_PATH.findall(text) + [a for a in (str(ROOT), sys.prefix) if a in text]
        if hits:
            out.append(f"machine-specific path in an output: {hits[0]!r} (regenerate: it scrubs them)")
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    if badge(name) not in first.source:
        out.append("no canonical Colab badge in the first markdown cell (`regenerate.py --header`)")
    if bool(smoke_only(nb)) != bool(NOTE.search(first.source)):
        out.append("the note on smoke-run outputs does not match the metadata (`regenerate.py --header`)")
    if not any(c.cell_type == "code" and c.source == install_cell_source() for c in nb.cells):
        out.append("no canonical install cell (`regenerate.py --header`)")
    return out


def dumps(nb) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


# ---- the command ----------------------------------------------------------------------------------------
def select(args: list[str]) -> list[Path]:
    every = sorted(NB_DIR.glob("*.ipynb"))
    if not args:
        return every
    chosen = [p for p in every if any(p.name == a or p.name.startswith(f"{a}_") or p.stem == a for a in args)]
    missing = [a for a in args if not any(p.name == a or p.name.startswith(f"{a}_") or p.stem == a for p in every)]
    if missing:
        raise SystemExit(f"no notebook matches {missing}; there are {[p.name for p in every]}")
    return chosen


def regenerate(path: Path, timeout: int = 3600) -> list[str]:
    """Header, strip, full run (`timeout` seconds per cell), scrub, shrink, check; writes `path` only if its run
    and checks pass."""
    nb = strip(apply_header(nbformat.read(path, as_version=4), path.name))
    try:
        execute(nb, smoke=smoke_only(nb) is not None, timeout=timeout, cwd=path.parent, bars=False)
    except CellExecutionError as e:
        return [f"the run failed, notebook left unchanged:\n{str(e)[-2000:]}"]
    shrink_images(scrub(nb))
    text = dumps(nb)
    found = problems(nb, path.name, len(text.encode()))
    if not found:
        path.write_text(text, encoding="utf-8")
        write_student(path, path.parent / "student")
    return found


def write_student(path: Path, out_dir: Path) -> Path:
    """The student version of the committed notebook `path`, written to `out_dir` under the same name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    target.write_text(dumps(student_notebook(nbformat.read(path, as_version=4))), encoding="utf-8")
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", help="numbers (03) or file names; default: all")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--header", action="store_true", help="only re-apply the Colab badge and install cell")
    mode.add_argument("--check", action="store_true", help="only check the committed notebooks")
    mode.add_argument("--student", metavar="OUT_DIR", type=Path,
                      help="only write the student versions (solution regions blanked, no outputs) to OUT_DIR")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    args = ap.parse_args(argv)
    failed = 0
    for path in select(args.notebooks):
        start = time.perf_counter()
        if args.header:
            nb = nbformat.read(path, as_version=4)
            path.write_text(dumps(apply_header(nb, path.name)), encoding="utf-8")
            found = []
        elif args.student:
            print(f"{path.name}: student version written to {write_student(path, args.student)}")
            continue
        elif args.check:
            found = problems(nbformat.read(path, as_version=4), path.name, path.stat().st_size)
        else:
            found = regenerate(path, args.timeout)
        failed += bool(found)
        print(f"{path.name}: {'FAILED' if found else 'ok'}, {path.stat().st_size / 2**10:.0f} KB, "
              f"{time.perf_counter() - start:.0f} s", *[f"\n  - {p}" for p in found], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
