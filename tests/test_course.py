"""The notebooks read as one course: numbered titles, a linked "Next:" to the following notebook, exercises that make
the student code (look-up questions at most half), checks kept in ditlab, no machine-specific paths."""
import json
import re
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def _cells(path):
    return [(c["cell_type"], "".join(c["source"])) for c in json.loads(path.read_text())["cells"]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_title_and_next_link(path):
    cells = _cells(path)
    number = int(path.name[:2])
    assert cells[0][1].startswith(f"# {number:02d} · "), f"{path.name} must open with '# {number:02d} · <title>'"
    assert f"notebooks/{path.name})" in cells[0][1], f"{path.name}: the Colab badge must point at this notebook"
    kind, last = cells[-1]
    links = re.findall(r"\]\((\d\d_[\w]+\.ipynb)\)", last)
    assert kind == "markdown" and links, f"{path.name} must end with a linked 'Next:' (or, last, a link back)"
    if path == NOTEBOOKS[-1]:
        assert "00_tour.ipynb" in links
        return
    assert last.startswith("**Next:**"), f"{path.name}: the last cell must start with **Next:**"
    target = links[0]
    assert int(target[:2]) == number + 1, f"{path.name}: Next must be notebook {number + 1:02d}, got {target}"
    if any(p.name[:2] == target[:2] for p in NOTEBOOKS):  # a notebook still being written elsewhere may be missing
        assert (NB_DIR / target).exists(), f"{path.name}: Next links to {target}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_make_the_student_code(path):
    """Every check has an answer cell before it: a coding one ('# your code here', or a 'Predict, then measure' task)
    or a look-up ('# your answer'); at least one coding exercise, look-ups at most half."""
    cells = _cells(path)
    coding = lookup = 0
    for i, (kind, src) in enumerate(cells):
        if kind == "code" and re.match(r"check\(\"", src):
            answer, prompt = cells[i - 1][1], cells[i - 2][1]
            if "# your code here" in answer or "Predict, then measure" in prompt:
                coding += 1
            else:
                assert "# your answer" in answer, f"{path.name}: the cell before {src.splitlines()[0]} is no answer cell"
                lookup += 1
    assert coding >= 1, f"{path.name} has no exercise that makes the student code"
    assert 2 * lookup <= coding + lookup, f"{path.name}: {lookup} look-up questions of {coding + lookup}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_machine_paths(path):
    text = path.read_text()
    for pattern in ("/work/", "/root/", "/home/", "/Users/", "C:\\\\"):
        assert pattern not in text, f"{path.name} contains the machine path {pattern!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_registered_exercise_and_piece_is_in_its_notebook(path):
    """Removing an exercise from a notebook fails here: each notebook's check cells are exactly the exercises
    (`ditlab.teach.exercises`) and pieces (`ditlab.teach.pieces`) registered for it, each answered in the cell
    before (a '# your code here' / '# your answer' cell, or a solution region for a piece)."""
    from ditlab.teach.exercises import EXERCISES
    from ditlab.teach.pieces import PIECES
    from ditlab.teach.student import regions

    cells = _cells(path)
    found = {"exercise": [], "piece": []}
    for i, (kind, src) in enumerate(cells):
        for call, name in re.findall(r"\b(check|build_check)\(\"(\w+)\"", src if kind == "code" else ""):
            found["piece" if call == "build_check" else "exercise"].append(name)
            before = cells[i - 1][1]
            answered = regions(before) if call == "build_check" else ("# your" in before or "Predict" in cells[i - 2][1])
            assert answered, f"{path.name}: the cell before {call}({name!r}) is no answer cell"
    want = {"exercise": sorted(n for n, (nb, _) in EXERCISES.items() if nb == path.stem),
            "piece": sorted(n for n, p in PIECES.items() if p.notebook == path.stem)}
    assert {k: sorted(v) for k, v in found.items()} == want, f"{path.name}: checks in the notebook vs registered"
    assert len(found["exercise"]) + len(found["piece"]) >= 2, f"{path.name}: fewer than two exercises"
