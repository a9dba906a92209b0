"""Every command a hint suggests works: the hints that `ditlab sample`, `list`, `flops`, `playground` and the
checkpoint resolver print are collected from their real output and each suggested command is run (in smoke mode:
2 sampling steps, one image per class) or, for training, parsed, and must be accepted. The `train` session's
tests do the same for train/demo/scaling/objectives."""
import re
import socket
import tomllib

import pytest

from conftest import ROOT
from ditlab import DiT, DiTConfig, save_model
from ditlab import cli, playground
from ditlab.checkpoint import not_found, shipped_names
from ditlab.cli import build_parser, main

COMMAND = re.compile(r"\bditlab ((?:sample|list|flops|playground|demo|train|scaling|objectives)"
                     r"(?: --?[a-z][a-z-]*(?: (?!-)[A-Za-z0-9_./=:-]+)?)*)")
FLAG = re.compile(r"(?<![\w`-])(--[a-z][a-z-]*)(?: (\d+|[A-Z]+))?")
EXTRA = re.compile(r"\[([a-z]+)\]")
SMOKE = {"sample": ["--steps", "2", "--per-class", "1"]}
TINY = DiTConfig(input_size=8, patch_size=4, in_channels=1, hidden_size=48, depth=1, num_heads=3, num_classes=10)


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working folder with one run, runs/mine."""
    monkeypatch.chdir(tmp_path)
    save_model(DiT(TINY), tmp_path / "runs" / "mine" / "ema.safetensors")
    return tmp_path


def commands(text: str) -> list[list[str]]:
    """The `ditlab ...` commands in a text, placeholders filled: NAME -> each shipped name, RUN -> runs/mine."""
    out = []
    for m in COMMAND.finditer(" ".join(text.split())):  # help text wraps lines anywhere
        words = m.group(1).split()
        for name in (shipped_names() if "NAME" in words else [None]):
            out.append([name if w == "NAME" else "runs/mine" if w == "RUN" else w for w in words])
    return out


def accept(argv: list[str], tmp_path, capsys) -> None:
    """Run a suggested command: sample/list/flops for real (smoke-sized), the others through the parser."""
    args = build_parser().parse_args(argv)  # SystemExit (argparse: unknown flag or value) fails the test
    if argv[0] == "sample":
        argv = [*argv, *SMOKE["sample"], "--out", str(tmp_path / "hint.png")]
        if "--ckpt" not in argv:
            argv += ["--ckpt", shipped_names()[0]]
    if argv[0] in ("sample", "list", "flops"):
        main(argv)
        assert "error" not in capsys.readouterr().err
    assert args.func is not None


def test_the_resolvers_hints_work(here, capsys):
    msg = not_found("digit-p4")
    guess = re.search(r"Did you mean '([^']+)'", msg).group(1)
    found = commands(msg) + [["sample", "--ckpt", guess]]
    assert ["list"] in found
    for argv in found:
        accept(argv, here, capsys)


def test_what_list_and_sample_help_suggest_works(here, capsys):
    main(["list"])
    text = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text += capsys.readouterr().out.strip().split("\n\n")[-1]  # the epilog (not the usage line)
    found = commands(text)
    assert ["sample", "--ckpt", "runs/mine"] in found and ["list"] in found
    assert all(["sample", "--ckpt", name] in found for name in shipped_names())
    for argv in found:
        accept(argv, here, capsys)


def test_the_commands_in_ditlab_help_are_accepted(here, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    found = commands(capsys.readouterr().out)
    assert {a[0] for a in found} >= {"sample", "list", "flops", "playground", "demo", "train"}
    for argv in found:
        if argv[0] == "sample":
            argv = ["sample", "--ckpt", "digits-p4"]  # the help writes `--ckpt NAME ...`
        accept(argv, here, capsys)


def test_flops_hints_work(here, capsys):
    main(["flops", "--rmsnorm"])
    for argv in commands(capsys.readouterr().out) + [["flops", "--rope", "--qk-norm", "--swiglu"]]:
        accept(argv, here, capsys)


def test_playground_hints_work(here, monkeypatch, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError) as e:
            playground.start(port=busy.getsockname()[1])
    flags = [f for f in FLAG.findall(str(e.value))]
    assert ("--port", "0") in flags
    started = []
    monkeypatch.setattr(cli, "serve", lambda **kw: started.append(kw))
    for flag, value in flags:
        main(["playground", flag, *([value] if value else [])])
    assert started and started[-1]["port"] == 0
    # the suggested --port 0 gets past every argument check of start() (Voilà itself is the next step)
    monkeypatch.setattr(playground, "check_voila", lambda: (_ for _ in ()).throw(RuntimeError("checks passed")))
    with pytest.raises(RuntimeError, match="checks passed"):
        playground.start(port=0, model="digits-p4")


def test_the_extras_hints_name_name_real_extras(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "voila" else real(name, *a))
    with pytest.raises(ModuleNotFoundError) as e:
        playground.start(port=0)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = EXTRA.findall(str(e.value))
    assert named and set(named) <= set(extras), named


def test_a_diverged_checkpoints_hint_is_a_train_flag(tmp_path):
    import torch

    model = DiT(TINY)
    with torch.no_grad():
        model.pos_embed.fill_(float("nan"))
    with pytest.raises(ValueError) as e:
        cli.load_model(save_model(model, tmp_path / "nan.safetensors"))
    flags = [f for f, _ in FLAG.findall(str(e.value))]
    assert flags == ["--lr"]
    build_parser().parse_args(["train", "--lr", "1e-4"])
