"""Project packaging stays consistent: environment.yml lists every dependency, README commands are real."""
import re

import tomllib
from conftest import ROOT


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = (ROOT / "environment.yml").read_text()
    listed = {_name(line.strip().lstrip("-").strip()) for line in env.splitlines() if line.strip().startswith("-")}
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    assert wanted <= listed, f"missing from environment.yml: {sorted(wanted - listed)}"
    assert "name: ditlab" in env and "-e ." in env
    assert not {"timm", "torchvision"} & {_name(r) for r in project["dependencies"]}


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1: lines.index("```bash") + 3]
    assert "ditlab demo" in block[0] or "ditlab flops" in block[0]
    assert "pytest" in block[1]
    test_cmd = block[1].split("&& ")[-1].split("#")[0].strip()
    assert test_cmd.split()[:3] == ["python", "-m", "pytest"]
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()
    assert "pip install -q torch==2.13.0" in (ROOT / ".ci" / "run").read_text()
