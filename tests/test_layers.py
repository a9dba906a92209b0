"""The architecture, checked from the code's own imports: ditlab is a stack of layers, each importing only
from the layers below it (see ditlab/__init__.py), with no import cycles and no hidden imports."""
import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ditlab"

# lowest first; a unit may import from itself and from units of a lower layer, never sideways or up
LAYERS = [
    ("extras", "checks"),
    ("io", "model"),
    ("diffusion", "data", "checkpoint"),
    ("sampling",),
    ("eval",),
    ("training",),
    ("hub", "studies", "zoo"),
    ("teach",),
    ("demo", "playground", "cli_help"),
    ("cli",),
    ("__main__",),
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
# the only imports allowed inside a function: heavy optional dependencies, each with a comment saying so
HEAVY = {"diffusers", "datasets", "huggingface_hub", "fvcore", "torch_fidelity", "torchdiffeq", "ipywidgets",
         "voila", "playwright"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path):
    """(target module, line, inside a function?) for every import of `name`; relative ones resolved."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join(parts + ([node.module] if node.module else []))
            # `from . import viz` / `from ditlab import zoo` import submodules; `from .viz import x` the module viz
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in dict.fromkeys(targets):
            yield t, node.lineno, id(node) in in_function


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "ditlab" and len(parts) > 1 else None


MODULES = _modules()


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in MODULES} - {None}
    assert units <= set(LAYER), f"modules outside the layer table: {sorted(units - set(LAYER))}"


@pytest.mark.parametrize("name", [m for m in MODULES if m != "ditlab"])
def test_imports_go_down_the_layers(name):
    src = _unit(name)
    bad = []
    for target, line, _ in _imports(name, MODULES[name]):
        dst = _unit(target)
        if dst is None or dst == src:
            continue
        if target == "ditlab":
            bad.append(f"{name}:{line} imports the package root `ditlab` (import the module that defines the name)")
        elif LAYER[dst] >= LAYER[src]:
            where = "the same layer" if LAYER[dst] == LAYER[src] else "a layer above"
            bad.append(f"{name}:{line} imports {target} from {where} ({dst!r} is layer {LAYER[dst]}, "
                       f"{src!r} is layer {LAYER[src]})")
    assert not bad, "\n".join(bad)


def test_model_needs_only_torch_and_einops():
    allowed = {"torch", "einops", "numpy", "math", "dataclasses", "__future__"}
    bad = [f"{m}:{line} imports {t}" for m in MODULES if _unit(m) == "model"
           for t, line, _ in _imports(m, MODULES[m])
           if not t.startswith(("ditlab.model", "ditlab.checks")) and t.split(".")[0] not in allowed]  # checks: stdlib only
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", list(MODULES))
def test_imports_inside_functions_are_only_heavy_optional_ones(name):
    lines = MODULES[name].read_text().splitlines()
    bad = []
    for target, line, inside in _imports(name, MODULES[name]):
        if not inside:
            continue
        if target.split(".")[0] not in HEAVY:
            bad.append(f"{name}:{line} imports {target} inside a function; import it at the top of the module")
        elif "#" not in lines[line - 1]:
            bad.append(f"{name}:{line} imports {target} inside a function without a comment saying which extra")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {m: {t for t, _, inside in _imports(m, p) if not inside and t in MODULES and t != m}
             for m, p in MODULES.items()}
    for m in graph:  # a module import also runs its package's __init__
        graph[m] |= {".".join(t.split(".")[:k]) for t in set(graph[m]) for k in range(2, t.count(".") + 1)
                     if ".".join(t.split(".")[:k]) in MODULES and not m.startswith(".".join(t.split(".")[:k]) + ".")
                     and ".".join(t.split(".")[:k]) != m}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_checker_names_an_offending_import(tmp_path, monkeypatch):
    """A test of the test: an upward import (model -> train) is reported with its module and line."""
    fake = tmp_path / "ditlab" / "model"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("import torch\n\nfrom ..training import train\n")
    found = list(_imports("ditlab.model.bad", fake / "bad.py"))
    assert ("ditlab.training", 3, False) in found
    monkeypatch.setitem(MODULES, "ditlab.model.bad", fake / "bad.py")
    with pytest.raises(AssertionError, match=r"ditlab.model.bad:3 imports ditlab.training from a layer above"):
        test_imports_go_down_the_layers("ditlab.model.bad")


def test_docs_library_table_lists_every_module_in_its_layer():
    """docs/library.md's table is the map a student reads first: every unit in the row of its layer, every file named
    (or matched by a `prefix*.py` pattern)."""
    rows = {}
    for line in (PKG.parent / "docs" / "library.md").read_text().splitlines():
        cells = line.split("|")
        if len(cells) > 3 and cells[1].strip()[:1].isdigit():
            rows[cells[2]] = (cells[1].strip(), cells[2] + cells[3])
    missing = []
    for name, path in MODULES.items():
        unit = _unit(name)
        if unit is None:
            continue
        row = next(((layer, text) for units, (layer, text) in rows.items() if f"`{unit}" in units), None)
        if row is None:
            missing.append(f"{unit}: no row")
            continue
        lo, _, hi = row[0].partition("–")
        if not int(lo) <= LAYER[unit] <= int(hi or lo):
            missing.append(f"{unit}: in the row of layer {row[0]}, is layer {LAYER[unit]}")
        stem = path.name if path.name != "__init__.py" else None
        patterns = re.findall(r"`(\w+)\*\.py`", row[1])
        if stem and f"`{stem}`" not in row[1] and not any(stem.startswith(p) for p in patterns):
            missing.append(f"{name}: {stem} not named")
    assert not missing, "\n".join(sorted(set(missing)))
