"""One source, two versions (ditlab.teach.student): the committed notebooks are solved; their student versions in
notebooks/student/ blank every solution region. For every piece the student writes, the check reports the blank
as "not written yet" and the solution as correct, and the student notebook runs top to bottom in smoke mode with
every piece blank, going on with ditlab's pieces (the solved notebooks' runs, tests/test_notebooks.py, assert that
every piece check says correct)."""
import json
import re

import pytest

from conftest import ROOT, load_script
from ditlab.teach.pieces import PIECES, grade
from ditlab.teach.student import BEGIN, END, STUDENT_BLANK, STUDENT_DIR, blank, regions, solution_cells, \
    student_notebook

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
regenerate = load_script(ROOT / "notebooks" / "regenerate.py")

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WITH_PIECES = sorted({ROOT / "notebooks" / f"{p.notebook}.ipynb" for p in PIECES.values()})
PROBE = ("import json, ditlab\nfrom ditlab.teach.pieces import RESULTS\n"
         "print('PROBE', json.dumps({'file': ditlab.__file__, 'pieces': RESULTS}))")
SKIPPED = re.compile(r"not here|skipp", re.IGNORECASE)  # how a notebook says a comparison could not run


def run_probed(nb, cwd) -> dict:
    """Run `nb` in smoke mode from `cwd` with a last cell that reports where ditlab came from and every piece
    check's outcome; returns that report (the probe cell is removed again)."""
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    regenerate.execute(nb, smoke=True, timeout=900, cwd=cwd)
    line = next(t for t in nb.cells.pop().outputs[0].text.splitlines() if t.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE "))


def skipped_comparisons(nb) -> list[str]:
    return [line for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
            for line in o.text.splitlines() if SKIPPED.search(line)]


def test_six_pieces_in_the_six_notebooks_that_build_them():
    built = {p.notebook[:2] for p in PIECES.values()}
    assert built == {"01", "02", "03", "04", "06", "07"}, f"pieces are built in {sorted(built)}"
    for path in WITH_PIECES:
        cells = json.loads(path.read_text())["cells"]
        sources = ["".join(c["source"]) for c in cells]
        for name, piece in PIECES.items():
            if piece.notebook != path.stem:
                continue
            at = [i for i, s in enumerate(sources) if re.search(rf'build_check\("{name}"', s)]
            assert len(at) == 1, f"{path.name}: piece {name!r} needs exactly one check cell, found {len(at)}"
            assert at[0] > 0 and regions(sources[at[0] - 1]), \
                f"{path.name}: the cell before build_check({name!r}) must hold the solution region"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_version_is_committed_and_current(path):
    """notebooks/student/ holds what `python notebooks/regenerate.py --student` makes of each committed notebook."""
    student = ROOT / STUDENT_DIR / path.name
    assert student.exists(), f"no {STUDENT_DIR}/{path.name}: run python notebooks/regenerate.py --student " \
                             f"{STUDENT_DIR} {path.name[:2]}"
    made = regenerate.dumps(student_notebook(nbformat.read(path, as_version=4)))
    assert student.read_text() == made, f"{STUDENT_DIR}/{path.name} is stale: python notebooks/regenerate.py " \
                                        f"--student {STUDENT_DIR} {path.name[:2]}"
    text = student.read_text()
    assert BEGIN not in text and END not in text and '"outputs": []' in text and '"output_type"' not in text
    assert f"blob/main/{STUDENT_DIR}/{path.name}" in text  # its Colab badge opens the student copy


@pytest.mark.parametrize("path", WITH_PIECES, ids=lambda p: p.name)
def test_student_notebook_runs_with_every_piece_blank(path, tmp_path):
    nb = regenerate.strip(nbformat.read(ROOT / STUDENT_DIR / path.name, as_version=4))
    report = run_probed(nb, tmp_path)
    mine = {name for name, p in PIECES.items() if p.notebook == path.stem}
    assert {name: report["pieces"].get(name, {}).get("outcome") for name in mine} == dict.fromkeys(mine, "blank")
    printed = "\n".join(o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs
                        if o.output_type == "stream")
    for name in mine:
        assert f"{name}: not written yet" in printed and PIECES[name].fallback_name in printed


def test_regions_blank_at_their_indentation_and_bad_markers_are_refused():
    source = f"def f(x):\n    y = 1\n    {BEGIN}\n    return x + y\n    {END}\n"
    assert regions(source) == ["    return x + y"]
    assert blank(source) == "def f(x):\n    y = 1\n" + "".join(f"    {s}\n" for s in STUDENT_BLANK)
    space = {}
    exec(blank(source), space)  # noqa: S102
    with pytest.raises(NotImplementedError):
        space["f"](1)
    for bad, words in ((f"{BEGIN}\nx = 1\n{END}\n", "inside a function"), (f"def f():\n    {BEGIN}\n", "without"),
                       (f"def f():\n    {END}\n", "without"), (f"def f():\n    {BEGIN}\n    {BEGIN}\n", "inside")):
        with pytest.raises(ValueError, match=words):
            regions(bad)


def test_student_notebook_drops_outputs_and_points_its_badge_at_itself():
    nb = nbformat.read(ROOT / "notebooks" / "01_patchify.ipynb", as_version=4)
    student = student_notebook(nb)
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert any(c.cell_type == "code" and c.outputs for c in nb.cells)  # the solved notebook is left alone
    assert f"blob/main/{STUDENT_DIR}/01_patchify.ipynb" in student.cells[0].source
    assert student_notebook(student) == student  # idempotent


def test_regenerate_student_writes_every_chosen_notebook(tmp_path, capsys):
    assert regenerate.main(["--student", str(tmp_path), "01"]) == 0
    assert (tmp_path / "01_patchify.ipynb").read_text() == (ROOT / STUDENT_DIR / "01_patchify.ipynb").read_text()


def test_readme_links_every_student_version():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"blob/main/{STUDENT_DIR}/{path.name})" in readme, f"README: no student Colab link for {path.name}"
