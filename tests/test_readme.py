"""Every command in the ```bash blocks of the README and the docs pages (docs/*.md) runs as written (offline, on a
CPU), and so does the README's tour in code, so documented commands can't rot.

The commands run in order (README first, then the docs pages by name), each distinct command once. The rules:
- skipped: set-up and the test suite (`pip install`, `python3 -m venv`, `pytest`: .ci/run runs those),
  `notebooks/regenerate.py` (full notebook runs, minutes; tests/test_notebooks.py covers them), `torchrun`
  (several processes, usually GPUs), `ditlab playground` (a server until Ctrl-C: tests/test_browser.py opens it), commands naming `cuda` on a machine without one, a Hugging Face dataset
  name as `--data` (needs the internet), and inputs that are not here (`--data`, `--ckpt`, `--vae` paths, e.g. the
  released `DiT-XL-2-256x256.pt`); `path/to/X` (the user's own file, e.g. `path/to/mnist.npz`) runs with
  ../shared/data/X where that exists beside the checkout and is skipped with that reason otherwise (a fresh clone);
- shortened where they train: `ditlab train` gets `--steps 2` (`--steps 4` with `--resume`, so it continues),
  `--sample-every 0` and `--no-verdict` (sample grids and the verdict are tested elsewhere), `ditlab demo`, `ditlab scaling` and `ditlab objectives` get
  `--smoke`;
- anything else fails the test until it gets a rule here.
The commands run one after another in one folder, beside a `shared` link to ../shared when that exists, so
`../shared` resolves as from the checkout and a later command finds what an earlier one wrote.
The tour (the README's ```python block under "A tour in code") runs in a fresh interpreter in an empty folder with
`ditlab.train` shortened the same way (2 steps, no sample grids, no verdict); its released-weights line is guarded
by the file's presence, so offline it is skipped by the tour itself.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SHARED

from ditlab.data import HF_DATASETS

INPUT_FLAGS = ("--data", "--ckpt", "--vae")
SETUP = ("pip", "venv", "pytest")


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
USER_FILE = "path/to/"  # the docs' stand-in for a file of the user's (MNIST, CIFAR-10)


def readme_commands() -> list[str]:
    """Each distinct command line of the README's and the docs pages' bash blocks, in order (continuations joined,
    comments dropped)."""
    out = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                tokens = shlex.split(line, comments=True)
                if tokens and shlex.join(tokens) not in out:
                    out.append(shlex.join(tokens))
    return out


def readme_tour() -> str:
    """The README's tour in code: the python block under "## A tour in code"."""
    section = (ROOT / "README.md").read_text().split("## A tour in code", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def plan(command: str, workdir: Path) -> tuple[list[list[str]] | None, str]:
    """(argv lists to run, "") or (None, why it is skipped) under the rules above."""
    tokens = shlex.split(command)
    if set(tokens) & set(SETUP):
        return None, "set-up or the test suite: .ci/run runs it"
    if tokens[:2] == ["python", "notebooks/regenerate.py"]:
        return None, "regenerating notebooks runs them in full (minutes); tests/test_notebooks.py runs them in smoke mode"
    if tokens[0] == "torchrun":
        return None, "torchrun: several processes, usually GPUs"
    if "playground" in tokens:
        return None, "ditlab playground serves until Ctrl-C: tests/test_browser.py opens it in a browser"
    if "cuda" in command and not torch.cuda.is_available():
        return None, "needs CUDA"
    parts, runs = [[]], []
    for t in tokens:
        parts.append([]) if t == "&&" else parts[-1].append(t)
    for argv in parts:
        for i, t in enumerate(argv):
            if t.startswith(USER_FILE):
                real = "../shared/data/" + t.removeprefix(USER_FILE)
                if not (workdir / real).exists():
                    return None, f"{t}: the user's own file; the test uses {real}, absent beside this checkout"
                argv[i] = real
        for flag, value in zip(argv, argv[1:]):
            if flag not in INPUT_FLAGS or value in ("digits", "shapes"):
                continue
            if value.lower().replace("-", "_") in HF_DATASETS:
                return None, f"{flag} {value}: a Hugging Face dataset (needs the internet)"
            if not (workdir / value).exists():
                if value.startswith("../shared/"):
                    return None, f"{value} is absent (no ../shared beside this checkout)"
                return None, f"{flag} {value}: the input is not here"
        if argv[0] != "ditlab":
            pytest.fail(f"README command {shlex.join(argv)!r} has no rule in tests/test_readme.py")
        if argv[1] == "train":
            # argparse keeps the last value of a repeated option
            argv = [*argv, "--steps", "4" if "--resume" in argv else "2", "--sample-every", "0", "--no-verdict"]
        elif argv[1] in ("demo", "scaling", "objectives"):
            argv = [*argv, "--smoke"]
        runs.append([sys.executable, "-m", "ditlab", *argv[1:]])
    return runs, ""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    if SHARED.exists():
        (root / "shared").symlink_to(SHARED)
    (root / "ditlab").mkdir()
    return root / "ditlab"


COMMANDS = readme_commands()


def test_the_readme_has_commands_to_run():
    assert any(c.startswith("ditlab train") for c in COMMANDS) and any(c.startswith("ditlab sample") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=[c[:60] for c in COMMANDS])
def test_readme_command_runs_as_written(command, workdir):
    runs, reason = plan(command, workdir)
    if runs is None:
        pytest.skip(reason)
    for argv in runs:
        p = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=900,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert p.returncode == 0, f"{shlex.join(argv)}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"


def test_the_readme_tour_runs_as_written(tmp_path):
    tour = readme_tour()
    assert "ditlab.train(" in tour and "ditlab.sample(" in tour and "load_pretrained(" in tour
    shorten = ("import functools, ditlab\n"
               "ditlab.train = functools.partial(ditlab.train, steps=2, sample_every=0, verdict=False)\n")
    p = subprocess.run([sys.executable, "-c", shorten + tour], cwd=tmp_path, capture_output=True, text=True,
                       timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, f"{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    assert (tmp_path / "samples.png").exists() and (tmp_path / "runs" / "tour" / "ema.safetensors").exists()
