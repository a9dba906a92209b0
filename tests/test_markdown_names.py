"""Every ditlab name the prose mentions exists: code-formatted `ditlab.x.y` and module-qualified names such as
`viz.patch_grid` (where the notebook imports `viz` from ditlab, or `viz` is a module of ditlab.teach / ditlab.studies:
the course's modules, named so in prose even where not imported) in the notebooks' markdown cells, README.md and
docs/*.md resolve by import + getattr. One test per notebook / page, so a failure names the page; its message
lists each unresolved name with its cell."""
import ast
import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest

import ditlab.studies
import ditlab.teach

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SPAN = re.compile(r"(`+)(.+?)\1", re.S)  # inline code, `x` or ``x``
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)  # fenced code blocks (of the markdown files)
DOTTED = re.compile(r"(?<![\w./-])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
FILE_SUFFIXES = {"csv", "png", "json", "py", "ipynb", "md", "npz", "zip", "safetensors", "pt", "yml", "yaml", "toml",
                 "txt", "html", "gz", "svg", "io", "org", "com"}

COURSE_MODULES = {m.name.rsplit(".", 1)[-1]: m.name for pkg in (ditlab.teach, ditlab.studies)
                  for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + ".")}  # viz -> ditlab.teach.viz


def ditlab_imports(code: str) -> dict[str, str]:
    """name -> dotted ditlab path of every `import ditlab...` / `from ditlab... import ...` in code (IPython magics
    and shell lines are blanked first)."""
    lines = [re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in code.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return {}
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ditlab":
            names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ditlab":
                    names[a.asname or a.name.split(".")[0]] = a.name if a.asname else "ditlab"
    return names


def resolves(dotted: str) -> bool:
    """Whether dotted (a module, or a module's attribute chain) exists."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def mentioned(text: str, aliases: dict[str, str]) -> list[tuple[str, str]]:
    """(as written, full dotted path) of each ditlab name in code spans of text."""
    found = []
    for span in SPAN.finditer(text):
        for name in DOTTED.findall(span.group(2)):
            head, _, rest = name.partition(".")
            if rest.rsplit(".", 1)[-1].lower() in FILE_SUFFIXES:
                continue  # a file name (data/scaling.csv) or a host, not a Python name
            if head == "ditlab":
                found.append((name, name))
            elif head in aliases:
                found.append((name, f"{aliases[head]}.{rest}"))
    return found


def unresolved(chunks: list[tuple[str, str]], aliases: dict[str, str]) -> list[str]:
    """'where: name' for each name in the (where, markdown text) chunks that does not resolve."""
    aliases = {**COURSE_MODULES, **aliases, "ditlab": "ditlab"}
    return [f"{where}: `{written}`" + (f" (= {full})" if full != written else "")
            for where, text in chunks for written, full in mentioned(text, aliases) if not resolves(full)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_markdown_names_resolve(path):
    cells = json.loads(path.read_text())["cells"]
    src = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells]
    aliases = {}
    for c, s in zip(cells, src):
        if c["cell_type"] == "code":
            aliases.update(ditlab_imports(s))
    bad = unresolved([(f"cell {i}", s) for i, (c, s) in enumerate(zip(cells, src)) if c["cell_type"] == "markdown"],
                     aliases)
    assert not bad, f"{path.name}: names in the markdown that do not exist:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_names_resolve(path):
    text = path.read_text()
    aliases = {}
    for block in FENCE.findall(text):
        aliases.update(ditlab_imports(block))
    # code blocks count as one code span each; prose is checked paragraph by paragraph (spans may wrap a line)
    text = FENCE.sub(lambda m: "`" + m.group(1).replace("`", " ") + "`\n", text)
    chunks, line = [], 1
    for para in text.split("\n\n"):
        chunks.append((f"line {line}", para))
        line += para.count("\n") + 2
    bad = unresolved(chunks, aliases)
    assert not bad, f"{path.relative_to(ROOT)}: names that do not exist:\n" + "\n".join(bad)


def test_the_checker_catches_a_missing_name():
    aliases = ditlab_imports("from ditlab.teach import viz\nimport ditlab.model as m\n")
    assert aliases == {"viz": "ditlab.teach.viz", "m": "ditlab.model"}
    text = "see `viz.patch_grid`, `viz.no_such_plot(x)`, `m.DiT`, `ditlab.eval.nothing` and `data/scaling.csv`"
    assert unresolved([("cell 1", text)], aliases) == [
        "cell 1: `viz.no_such_plot` (= ditlab.teach.viz.no_such_plot)", "cell 1: `ditlab.eval.nothing`"]
