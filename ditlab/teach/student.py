"""One source, two versions: the committed notebooks are the solved, fully run ones; the student version blanks
every solution region and drops the outputs (`python notebooks/regenerate.py --student OUT_DIR`).

A solution region is nbgrader's (and otter-grader's) convention, inside a function or method body:

    ### BEGIN SOLUTION
    ...the solution...
    ### END SOLUTION

The student version replaces it, at the region's indentation, by STUDENT_BLANK: the pieces' checks
(`ditlab.teach.pieces`) report the NotImplementedError it raises as "not written yet" and the notebook goes on with
ditlab's piece. Works on nbformat notebooks and on plain dicts read with `json`.
"""
import copy
import re

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUDENT_BLANK = ["# your code here", 'raise NotImplementedError("write this piece, then run the check cell below")']
STUDENT_DIR = "notebooks/student"  # where the generated versions are committed (the Colab links open them there)
STUDENT_NOTE = ("*Student version: write the pieces marked `# your code here`; the check cell after each says "
                "what differs. Generated from the solved notebook by `python notebooks/regenerate.py --student`.*")
_COLAB = re.compile(r"(colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w.-]+/)notebooks/([\w.-]+\.ipynb)")


def _source(cell) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def regions(source: str) -> list[str]:
    """The solution regions of one cell's source, as text; ValueError when markers are unbalanced or a region is
    not indented (a blank at the top level would stop the notebook instead of letting the check report it)."""
    found, current = [], None
    for n, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if current is not None:
                raise ValueError(f"line {n}: {BEGIN!r} inside another solution region")
            if not line.startswith((" ", "\t")):
                raise ValueError(f"line {n}: a solution region must sit inside a function or method body")
            current = []
        elif stripped == END:
            if current is None:
                raise ValueError(f"line {n}: {END!r} without {BEGIN!r}")
            found.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        raise ValueError(f"{BEGIN!r} without {END!r}")
    return found


def blank(source: str) -> str:
    """`source` with every solution region replaced by STUDENT_BLANK at the region's indentation."""
    regions(source)  # validates
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in STUDENT_BLANK]
            inside = True
        elif stripped == END:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def solution_cells(nb) -> list[int]:
    """Indices of the code cells that hold a solution region."""
    return [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and regions(_source(c))]


def student_notebook(nb):
    """The student version of a solved notebook: regions blanked, outputs and execution counts dropped, the Colab
    badge pointing at the student copy, and a note under the title."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["source"] = blank(_source(cell))
            cell["outputs"], cell["execution_count"] = [], None
    first = nb["cells"][0]
    text = _COLAB.sub(rf"\g<1>{STUDENT_DIR}/\g<2>", _source(first))
    if STUDENT_NOTE not in text:  # under the title and its badge
        parts = text.split("\n\n", 2)
        text = "\n\n".join(parts[:2] + [STUDENT_NOTE] + parts[2:])
    first["source"] = text
    nb["metadata"].pop("widgets", None)
    return nb
