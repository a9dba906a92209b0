"""Project packaging stays consistent: dependencies split into the core and named extras (each optional import
names its extra when missing), environment.yml lists every dependency, README commands are real."""
import ast
import importlib.metadata
import re
import subprocess
import sys

import pytest
import tomllib
from conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;@]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements(extra: str) -> set[str]:
    """Distribution names an extra brings, following `ditlab[...]` references."""
    out = set()
    for req in EXTRAS[extra]:
        if _name(req) == "ditlab":
            for e in re.search(r"\[(.*)\]", req).group(1).split(","):
                out |= _requirements(e.strip())
        else:
            out.add(_name(req))
    return out


CORE = {_name(r) for r in PROJECT["dependencies"]}


def test_core_is_small_and_heavy_packages_are_in_named_extras():
    assert {"lab", "hf", "flops", "all", "test"} <= set(EXTRAS)
    assert CORE >= {"torch", "einops", "numpy", "safetensors", "tqdm", "matplotlib", "ipywidgets"}
    assert not CORE & {"jupyterlab", "notebook", "jupyter-server", "diffusers", "datasets", "fvcore", "timm",
                       "torchvision", "torch-fidelity"}
    assert "jupyterlab" in _requirements("lab") and {"diffusers", "datasets"} <= _requirements("hf")
    assert "fvcore" in _requirements("flops")
    # `all` is every extra but the tool extras (test, browser, docs) and `fid`, whose torchvision would replace the
    # installed torch (pyproject.toml, tests/test_install.py)
    optional = set().union(*(_requirements(e) for e in EXTRAS if e not in ("all", "test", "browser", "docs", "fid")))
    assert optional <= _requirements("all") and "torch-fidelity" not in _requirements("all")
    assert _requirements("test") >= _requirements("hf") | _requirements("flops")  # the suite runs everything


def test_environment_yml_lists_every_dependency():
    env = (ROOT / "environment.yml").read_text()
    listed = {_name(line.strip().lstrip("-").strip()) for line in env.splitlines() if line.strip().startswith("-")}
    wanted = CORE | set().union(*(_requirements(e) for e in EXTRAS))
    assert wanted <= listed, f"missing from environment.yml: {sorted(wanted - listed)}"
    assert "name: ditlab" in env and "-e ." in env


TREES = {path: ast.parse(path.read_text()) for path in sorted((ROOT / "ditlab").rglob("*.py"))}


def _third_party_imports():
    """(module file, top-level name, inside a function?, node) of every non-ditlab, non-stdlib import in ditlab/."""
    for path, tree in TREES.items():
        inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if n is not f}
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level else []
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"ditlab"}:
                yield path.relative_to(ROOT), top, id(node) in inside, node


def test_module_level_imports_need_only_the_core():
    dists = importlib.metadata.packages_distributions()
    bad = {f"{path}: {top}" for path, top, inside, _ in _third_party_imports()
           if not inside and not {_name(d) for d in dists.get(top, [top])} & CORE}
    assert not bad, f"imported at module level but not a core dependency: {sorted(bad)}"


def test_every_optional_import_is_guarded_by_the_extra_that_installs_it():
    dists = importlib.metadata.packages_distributions()
    guarded = {}
    for tree in TREES.values():
        for w in ast.walk(tree):
            call = w.items[0].context_expr if isinstance(w, ast.With) else None
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "requires":
                guarded.update({id(n): call.args[0].value for n in ast.walk(w)})
    bad = []
    for path, top, inside, node in _third_party_imports():
        if not inside or {_name(d) for d in dists.get(top, [top])} & CORE:
            continue
        extra = guarded.get(id(node))
        if extra is None:
            bad.append(f"{path}:{node.lineno} imports {top} outside `with requires(<extra>):`")
        elif extra not in EXTRAS or not {_name(d) for d in dists.get(top, [top])} & _requirements(extra):
            bad.append(f"{path}:{node.lineno} imports {top} under requires({extra!r}), which does not install it")
    assert not bad, "\n".join(bad)


def _block(monkeypatch, *modules):
    """`import m` (and of any submodule, even one imported before) now raises ImportError."""
    for m in modules:
        for name in [m] + [k for k in sys.modules if k.startswith(m + ".")]:
            monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("module, extra, call", [
    ("fvcore", "flops", lambda: __import__("ditlab.eval", fromlist=["x"]).count_flops("DiT-Pico/8")),
    ("diffusers", "hf", lambda: __import__("ditlab.hub.interop", fromlist=["x"]).scheduler_from_name("ddim")),
    ("huggingface_hub", "hf", lambda: __import__("ditlab.io", fromlist=["x"]).hub_reachable()),
    ("torch_fidelity", "fid", lambda: __import__("ditlab.eval.metrics", fromlist=["x"]).inception_fid(
        __import__("torch").zeros(2, 1, 8, 8), __import__("torch").zeros(2, 1, 8, 8))),
])
def test_a_missing_extra_is_named(monkeypatch, module, extra, call):
    _block(monkeypatch, module)
    with pytest.raises(ImportError, match=rf"{module} is not installed.*pip install 'ditlab\[{extra}\]'"):
        call()


def test_load_dataset_from_the_hub_without_the_hf_extra_names_it(monkeypatch, tmp_path):
    from ditlab.data import load_dataset

    _block(monkeypatch, "datasets")
    with pytest.raises(ImportError, match=r"pip install 'ditlab\[hf\]'"):
        load_dataset("mnist", cache_dir=tmp_path)


def test_the_core_runs_with_every_extra_missing(tmp_path):
    """A core-only install (`pip install ditlab`): every ditlab module imports, a shipped checkpoint loads and
    samples, the closed-form Gflops work and `ditlab demo --smoke` runs, with the optional packages (and Jupyter)
    made unimportable."""
    blocked = ["diffusers", "datasets", "huggingface_hub", "fvcore", "torch_fidelity", "torchdiffeq", "jupyterlab",
               "jupyter_server", "notebook", "nbclient", "pytest"]
    code = f"""
import importlib, pkgutil, sys
for m in {blocked!r}:
    sys.modules[m] = None
import ditlab
for info in pkgutil.walk_packages(ditlab.__path__, "ditlab."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
model = ditlab.load_pretrained("digits-p8")
out = ditlab.sample(model, ["3"], steps=2, progress=False)
print(tuple(out.images.shape), round(ditlab.estimate_flops("DiT-XL/2") / 1e9, 1))
from ditlab.cli import main
main(["demo", "--smoke", "--out-dir", {str(tmp_path / "demo")!r}])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:5] == ["(1,", "1,", "16,", "16)", "118.7"]
    assert (tmp_path / "demo" / "samples.png").exists()


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one_twice():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1: lines.index("```bash") + 3]
    assert "ditlab demo" in block[0] or "ditlab flops" in block[0]
    assert "pytest" in block[1]
    test_cmd = block[1].split("&& ")[-1].split("#")[0].strip()
    assert test_cmd.split()[:3] == ["python", "-m", "pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci and "pip install -q torch==2.13.0" in ci
    assert "git clone" in ci and "README" in ci  # the second run: the README's command in a fresh clone
