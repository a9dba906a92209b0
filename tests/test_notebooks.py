"""The course notebooks: committed with the outputs of a full CPU run (figures visible on GitHub and nbviewer),
clean and small; each still runs headless in smoke mode (DITLAB_SMOKE=1) from a stripped copy; and the tool that
regenerates them (notebooks/regenerate.py) applies the one Colab header and cleans what it writes."""
import ast
import re
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, load_script
from ditlab.teach.pieces import PIECES
from test_student import run_probed, skipped_comparisons

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
regenerate = load_script(ROOT / "notebooks" / "regenerate.py")

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HANG_GUARD_S = 900  # per cell, smoke mode: ~10x the slowest cell on a busy 2-core machine; a timeout, not a speed test
COMPARE_WITH_OFFICIAL = ("02", "03", "04", "05", "06", "07")  # 12's skips are the released weights (the Hub)
NAN = re.compile(r"\bnan\b", re.IGNORECASE)
CLAIM = re.compile(r"==\s*(the\s+)?official|equal to the official|the official \w+ (code's|sampler)", re.IGNORECASE)


def unearned_claims(nb) -> list[str]:
    """Printed claims of equality with the official code that do not sit inside a conditional (`if ref is not
    None:`), i.e. that would be printed although the comparison did not run."""
    found = []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        source = re.sub(r"^(\s*)[%!].*$", r"\1pass", cell.source, flags=re.MULTILINE)  # IPython magics
        tree = ast.parse(source)
        guarded = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print" and id(node) not in guarded:
                text = " ".join(c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str))
                if CLAIM.search(text):
                    found.append(f"code cell {i}: {text!r} is printed whether or not the comparison ran")
    return found


def printed_nans(nb) -> list[str]:
    return [f"code cell {i}: {line.strip()!r}" for i, c in enumerate(c for c in nb.cells if c.cell_type == "code")
            for o in c.get("outputs", []) for line in (o.get("text") or o.get("data", {}).get("text/plain", "")).splitlines()
            if NAN.search(line)]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_clean_outputs(path):
    """Outputs present, no errors, counts in order, PNG figures, no machine paths, ≤ 2 MB, canonical header; no
    `nan` printed and no claim of equality with the official code outside the check that earns it."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    found = regenerate.problems(nb, path.name, path.stat().st_size) + unearned_claims(nb) + printed_nans(nb)
    assert not found, f"{path.name}:\n" + "\n".join(found) + "\n(fix: python notebooks/regenerate.py " + path.name[:2] + ")"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_smoke_mode_from_a_copy_outside_the_repository(path, tmp_path, wheel_site, monkeypatch):
    """As a student's copy runs on Colab: ditlab installed from its wheel (not this checkout), in a folder with
    nothing beside it, so every file comes through the package's own lookup. No cell errors, no `nan` printed,
    no comparison skipped (the official fixtures ship in the wheel), and every piece the notebook builds passes its
    check (the solution regions are the solutions)."""
    monkeypatch.setenv("PYTHONPATH", str(wheel_site))  # the kernel imports the installed wheel
    nb = regenerate.strip(nbformat.read(path, as_version=4))
    report = run_probed(nb, tmp_path)  # raises with the failing cell's traceback
    assert report["file"].startswith(str(wheel_site)), f"the notebook imported {report['file']}, not the wheel"
    if path.name[:2] in COMPARE_WITH_OFFICIAL:
        assert not skipped_comparisons(nb), skipped_comparisons(nb)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    solved = {name: r for name, r in report["pieces"].items() if PIECES[name].notebook == path.stem}
    assert {name: r["outcome"] for name, r in solved.items()} == dict.fromkeys(
        [n for n, p in PIECES.items() if p.notebook == path.stem], "correct"), "a solved piece fails its check"
    assert all(r["official"] is not False for r in solved.values()), f"an official comparison did not run: {solved}"
    nans = printed_nans(nb)
    assert not nans, nans


def test_unearned_claims_are_found():
    nb = _notebook('print("by hand == ditlab == official")', 'if ref is not None:\n    print("== official")',
                   'print("mine == ditlab")', '%matplotlib inline\nprint("equal to the official code")')
    assert [f.split(":")[0] for f in unearned_claims(nb)] == ["code cell 0", "code cell 3"]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="relative difference: nan\nnanoGPT\n")]
    assert printed_nans(nb) == ["code cell 0: 'relative difference: nan'"]


def _notebook(*cells):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 · a test\n\nText.")] + [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


def test_header_is_canonical_idempotent_and_replaces_old_ones():
    url = regenerate.REPO_URL
    assert url.startswith("https://github.com/") and url in regenerate.install_cell_source()
    assert "[lab]" not in regenerate.install_cell_source().splitlines()[-1]  # never a Jupyter server on Colab
    nb = regenerate.apply_header(_notebook("x = 1"), "99_test.ipynb")
    assert nb.cells[0].source.startswith("# 99 · a test\n\n" + regenerate.badge("99_test.ipynb"))
    assert nb.cells[1].source == regenerate.install_cell_source() and nb.cells[2].source == "x = 1"
    again = regenerate.apply_header(nbformat.from_dict(nb), "99_test.ipynb")
    assert again == nb
    old = _notebook('# Colab only: install ditlab\n%pip install -q "git+https://example.org/old"', "y = 2")
    old.cells[0].source = "# 99\n\n[![Open In Colab](https://x/badge.svg)](https://colab.research.google.com/old.ipynb)"
    new = regenerate.apply_header(old, "99_test.ipynb")
    assert len(new.cells) == 3 and new.cells[1].source == regenerate.install_cell_source()
    assert new.cells[0].source == "# 99\n\n" + regenerate.badge("99_test.ipynb")
    new.metadata["ditlab"] = {"regenerate": "smoke", "reason": "it trains for hours"}
    smoke = regenerate.apply_header(new, "99_test.ipynb")
    note = regenerate.SMOKE_NOTE.format(reason="it trains for hours")
    assert smoke.cells[0].source == "# 99\n\n" + regenerate.badge("99_test.ipynb") + "\n\n" + note
    assert regenerate.apply_header(nbformat.from_dict(smoke), "99_test.ipynb") == smoke
    del smoke.metadata["ditlab"]
    assert regenerate.apply_header(smoke, "99_test.ipynb").cells[0].source == "# 99\n\n" + regenerate.badge("99_test.ipynb")


def test_every_notebook_and_the_readme_use_the_one_repository_url():
    url = regenerate.REPO_URL
    for path in NOTEBOOKS:
        text = path.read_text()
        assert regenerate.badge(path.name) in nbformat.read(path, as_version=4).cells[0].source, path.name
        others = {u for u in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text) if u != url}
        colab = {u for u in re.findall(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)", text)}
        assert colab == {url.removeprefix("https://github.com/")}, f"{path.name}: Colab links to {colab}"
        assert not any("ditlab" in u for u in others), f"{path.name}: another ditlab repository URL {others}"
    readme = (ROOT / "README.md").read_text()
    assert url in readme and regenerate.badge("00_tour.ipynb") in readme


def test_regenerate_runs_a_notebook_without_outputs_and_cleans_what_it_writes(tmp_path):
    path = tmp_path / "99_test.ipynb"
    nbformat.write(_notebook(
        "%matplotlib inline\nimport os, sys, tempfile\nprint(os.getcwd(), sys.prefix, tempfile.mkdtemp())",
        "from matplotlib.figure import Figure\nfig = Figure(figsize=(2, 1)); fig.subplots().plot([0, 1]); fig",
        "", "print(os.environ['DITLAB_SMOKE'])",
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(2)): pass\n"
        "import ipywidgets as W\nout = W.Output()\ndisplay(out)\nwith out:\n    print('captured')"), path)
    assert regenerate.regenerate(path, timeout=120) == []
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, None, 4, 5]  # the install cell runs first (a no-op)
    printed = code[1].outputs[0].text
    assert str(tmp_path) not in printed and "<tmp>" in printed and "<python>" in printed
    assert "image/png" in code[2].outputs[0].data and code[4].outputs[0].text == "0\n"  # a full run
    assert not code[5].outputs and "widgets" not in nb.metadata  # a progress bar: nothing to show on GitHub
    assert regenerate.problems(nb, path.name, path.stat().st_size) == []
    nb.metadata["ditlab"] = {"regenerate": "smoke", "reason": "a test"}  # again, with outputs, in smoke mode
    nbformat.write(nb, path)
    assert regenerate.regenerate(path, timeout=120) == []
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[-2].outputs[0].text == "1\n" and "a test" in nb.cells[0].source


def test_execute_uses_this_python_and_stops_its_kernel():
    nb = _notebook("import os, sys\nprint(sys.executable, os.getpid())")
    regenerate.execute(nb, smoke=True, timeout=60)
    executable, pid = nb.cells[1].outputs[0].text.split()
    assert executable == sys.executable
    if not Path("/proc").is_dir():
        pytest.skip("no /proc to look for the kernel's process")
    deadline = time.time() + 10
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "the kernel outlived its notebook"


def test_problems_names_what_is_wrong():
    nb = regenerate.apply_header(_notebook("print(1)"), "99_test.ipynb")
    found = " | ".join(regenerate.problems(nb, "99_test.ipynb", 10))
    assert "no outputs" in found and "execution counts" in found and "badge" not in found and "cell (" not in found
    nb = _notebook("print(1)", "1 / 0")  # no header
    nb.cells[1].execution_count, nb.cells[2].execution_count = 2, 1
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="saved to /home/alice/ditlab/runs\n")]
    nb.cells[2].outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                  traceback=[]),
                           nbformat.v4.new_output("display_data", data={"image/jpeg": "AAAA"}),
                           nbformat.v4.new_output("display_data", data={
                               "text/plain": regenerate.PREVIEW_MARK, regenerate.WIDGET: {"model_id": "x"}}),
                           nbformat.v4.new_output("display_data", data={
                               "text/plain": "  0%|    | 0/50", regenerate.WIDGET: {"model_id": "y"}})]
    found = " | ".join(regenerate.problems(nb, "99_test.ipynb", 3 * 2**20))
    for words in ("counts not 1..2", "3.00 MB", "ZeroDivisionError", "not PNG", "without its static preview",
                  "a progress bar?", "/home/", "Colab badge", "install cell"):
        assert words in found, words
