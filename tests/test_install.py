"""Outside the repository: the wheel (what `pip install git+...` builds too) carries data/ (the shipped
checkpoints, their model card, the study results) and works from any folder; the notebooks' Colab install cell
leaves Colab's torch and Jupyter packages alone. Offline: the wheel is built without build isolation, pip never
looks at an index."""
import json
import os
import re
import shlex
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT, load_script, pip

def _data_files() -> dict[str, bytes]:
    """data/ as git has it (every file when there is no git)."""
    git = subprocess.run(["git", "ls-files", "data"], cwd=ROOT, capture_output=True, text=True)
    names = git.stdout.split() if git.returncode == 0 and git.stdout else \
        [str(p.relative_to(ROOT)) for p in (ROOT / "data").rglob("*") if p.is_file()]
    return {n.removeprefix("data/"): (ROOT / n).read_bytes() for n in names}


def test_wheel_packs_every_file_of_data_into_the_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        packed = {n.removeprefix("ditlab/_data/"): z.read(n) for n in z.namelist() if n.startswith("ditlab/_data/")}
        inside = set(z.namelist())
    files = _data_files()
    assert set(files) <= set(packed), f"not in the wheel: {sorted(set(files) - set(packed))}"
    assert all(packed[n] == b for n, b in files.items())
    assert {"checkpoints/README.md", "scaling.csv", "scaling.png"} <= set(packed)
    assert {"ditlab/eval/paper_table4.csv", "ditlab/data/imagenet_classes.json"} <= inside


CHECK = """
import json
import ditlab
from ditlab.eval import paper_table
from ditlab.io import shipped_path
from ditlab.studies.scaling import read_csv
out = dict(file=ditlab.__file__, names=ditlab.list_pretrained(), table4=len(paper_table()),
           card=(shipped_path("checkpoints") / "README.md").read_text()[:34],
           scaling=[r["model"] for r in read_csv(shipped_path("scaling.csv"))])
for name in out["names"]:
    model = ditlab.load_pretrained(name)
    out[name] = [model.config.patch_size, model.card["name"], model.classes[7]]
print(json.dumps(out))
"""


def test_installed_wheel_loads_every_checkpoint_and_the_scaling_csv_from_outside_the_repo(wheel_site, tmp_path):
    from ditlab.eval import paper_table
    from ditlab.studies.scaling import read_csv

    site = wheel_site
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DITLAB_CHECKPOINTS", "PYTHON"))}
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env={**env, "PYTHONPATH": str(site)},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["file"].startswith(str(site)), f"imported {out['file']}, not the installed wheel"
    shipped = sorted(p.stem for p in (ROOT / "data" / "checkpoints").glob("*.safetensors"))
    assert out["names"] == shipped and len(shipped) >= 4
    for name in shipped:
        card = json.loads((ROOT / "data" / "checkpoints" / f"{name}.json").read_text())
        assert out[name] == [card["config"]["patch_size"], name, "7"]
    assert out["card"] == "# Shipped checkpoints (model card)"
    assert out["scaling"] == [r["model"] for r in read_csv(ROOT / "data" / "scaling.csv")]
    assert out["table4"] == len(paper_table())


def test_installed_wheel_samples_every_shipped_name_from_another_folder(wheel_site, tmp_path):
    """`ditlab sample --ckpt digits-p4` from a wheel, in a folder that is not the repository: each shipped name
    writes a grid; a typo exits non-zero naming the closest one."""
    site = wheel_site
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DITLAB_CHECKPOINTS", "PYTHON"))}
    env["PYTHONPATH"] = str(site)
    names = sorted(p.stem for p in (ROOT / "data" / "checkpoints").glob("*.safetensors"))

    def ditlab(*args):
        return subprocess.run([sys.executable, "-m", "ditlab", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)

    for name in names:
        done = ditlab("sample", "--ckpt", name, "--steps", "2", "--per-class", "1", "--out", f"{name}.png")
        assert done.returncode == 0 and (tmp_path / f"{name}.png").stat().st_size > 0, (name, done.stderr)
    done = ditlab("sample", "--ckpt", "digit-p4", "--steps", "2")
    assert done.returncode == 1 and "Did you mean 'digits-p4'?" in done.stderr, done.stderr
    done = ditlab("list")
    assert done.returncode == 0 and all(name in done.stdout for name in names), done.stdout


# Versions at or below those of Google Colab's runtime (2024-25): the cell must not need newer ones.
COLAB = {"torch": "2.1.0", "jupyter_server": "1.16.0", "notebook": "6.5.5", "tornado": "6.3.2",
         "ipykernel": "5.5.6", "ipywidgets": "7.7.1"}


def test_colab_install_cell_leaves_torch_and_jupyter_alone(wheel, tmp_path):
    """The cell's pip command, resolved (`--dry-run --report`) where Colab's packages are installed at the
    versions above (metadata-only stand-ins shadowing this environment's) and everything else ditlab[hf,flops,flow]
    needs is present: it must install ditlab and nothing else (no index: it could not fetch a thing)."""
    regenerate = load_script(ROOT / "notebooks" / "regenerate.py")
    line = regenerate.install_cell_source().splitlines()[-1].strip()
    args = shlex.split(line)
    assert args[:2] == ["%pip", "install"] and any(f"git+{regenerate.REPO_URL}" in a for a in args)
    args = [a.replace(f"git+{regenerate.REPO_URL}", wheel.as_uri()) for a in args[2:]]
    colab = tmp_path / "colab"
    for name, version in COLAB.items():
        info = colab / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    pip("install", *args, "--dry-run", "--report", report, "--no-index", "--quiet",
        env={**env, "PYTHONPATH": str(colab), "PIP_FIND_LINKS": ""})
    installs = {item["metadata"]["name"].lower(): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    assert set(installs) <= {"ditlab"}, f"the Colab cell would install or upgrade {installs}"


def test_shipped_files_are_read_through_shipped_path():
    """A path built from the package's own location (`Path(ditlab.__file__).parents[1] / "data"`) finds data/ in
    a clone only: code and notebooks ask `ditlab.io.shipped_path`, which also looks inside an installed wheel."""
    pattern = re.compile(r"__file__\)(\.resolve\(\))?\.parents\[|\.parent\.parent|\.\./data/")
    places = [p for p in (ROOT / "ditlab").rglob("*.py") if p.relative_to(ROOT).as_posix() != "ditlab/io/paths.py"] + \
        sorted((ROOT / "notebooks").glob("*.ipynb"))
    bad = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in places for m in [pattern.search(p.read_text())] if m]
    assert not bad, f"use ditlab.io.shipped_path(...) instead: {bad}"


# ---- installs that keep the user's torch ---------------------------------------------------------------------
# Every documented install of an extra, run after the user's own torch (the README installs a pinned CPU build
# first): none may replace that torch. `fid` pulls torchvision, which is built for one torch: it is documented with
# the installed torch pinned (pyproject.toml) and left out of `all`.
EXTRAS = ["lab", "hf", "flops", "flow", "app", "all", "test", "browser"]
# the `fid` line's pin: "torch==$(python -c 'from importlib.metadata import version; print(version("torch"))')"
TORCH_PIN = "torch=={torch}"


def _fake_wheel(folder, name: str, version: str, requires=()) -> None:
    """A metadata-only wheel: enough for pip's resolver, never installed."""
    dist = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as z:
        z.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
        z.writestr(f"{dist}.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}.dist-info/RECORD", "")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """An offline index where a newer torch exists, with a torchvision for it and one for the installed torch
    (each requiring its own torch, as the real ones do), and torch-fidelity; stand-ins for the extras' packages
    this environment lacks (metadata only, on PYTHONPATH)."""
    import importlib.metadata as md

    base = md.version("torch").split("+")[0]
    major, minor = (int(v) for v in base.split(".")[:2])
    newer = f"{major}.{minor + 1}.0"
    wheels, standins = tmp_path_factory.mktemp("index"), tmp_path_factory.mktemp("standins")
    _fake_wheel(wheels, "torch", newer)
    _fake_wheel(wheels, "torchvision", "99.0.0", [f"torch=={newer}"])
    _fake_wheel(wheels, "torchvision", "98.0.0", [f"torch=={base}"])
    _fake_wheel(wheels, "torch-fidelity", "0.4.0", ["torch", "torchvision"])
    for name in ("jupyterlab", "voila", "playwright"):
        try:
            md.version(name)
        except md.PackageNotFoundError:
            info = standins / f"{name}-99.0.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 99.0\n")
    return wheels, standins


def _resolve(wheel, index, tmp_path, extra: str, *more: str) -> dict:
    """What `pip install "ditlab[extra]" *more` would install here (--dry-run --report, no index but `index`)."""
    wheels, standins = index
    report = tmp_path / f"{extra}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    pip("install", f"ditlab[{extra}] @ {wheel.as_uri()}", *more, "--dry-run", "--report", report, "--no-index",
        "--find-links", wheels, "--quiet", env={**env, "PYTHONPATH": str(standins), "PIP_CONFIG_FILE": os.devnull})
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}


@pytest.mark.parametrize("extra", EXTRAS)
def test_every_extra_keeps_the_installed_torch(wheel, index, tmp_path, extra):
    installs = _resolve(wheel, index, tmp_path, extra)
    assert "torch" not in installs and "torchvision" not in installs, installs


def test_the_fid_extra_keeps_torch_when_installed_as_documented(wheel, index, tmp_path):
    from importlib.metadata import version

    installs = _resolve(wheel, index, tmp_path, "fid", TORCH_PIN.format(torch=version("torch")))
    assert "torch" not in installs and installs["torchvision"] == "98.0.0", installs
    # a test of the test: without the pin pip swaps torch for the newer one the index offers (the bug it prevents)
    assert "torch" in _resolve(wheel, index, tmp_path, "fid")
