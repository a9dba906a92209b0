"""Every piece of advice that training, the demo, the studies and the verdict can print is a command that runs:
each message is produced for real (on the command line: `command_line`), every flag it suggests is looked up in
that command's own parser and the command line it makes is parsed (smoke sizes), the central ones are run. CLI
messages speak CLI (`--resume`), API messages speak Python (`resume=True`), never both."""
import json
import re

import pytest
import torch
from test_train import TINY

import ditlab.io.files
from ditlab import save_model
from ditlab.cli import build_parser, main
from ditlab.eval.verdict import assess
from ditlab.training import loop
from ditlab.training.advice import command_line
from ditlab.training.rundir import run_folder

SMOKE_TRAIN = ["--model", TINY["model"], "--model-args", json.dumps(TINY["model_args"]), "--data", "digits",
               "--limit", "64", "--batch-size", "8", "--objective", "ddpm", "--sample-every", "0", "--no-verdict",
               "--no-progress", "--log-every", "1"]
SMOKE = {"train": SMOKE_TRAIN, "demo": ["--smoke"], "scaling": ["--smoke"], "objectives": ["--smoke"]}
FLAG = re.compile(r"(--[a-z][a-z0-9-]*)(?:[ =]([^\s,;)-][^\s,;)]*))?")  # a flag and the word after it
PYTHON = re.compile(r"\b(resume|overwrite|out_dir|steps|recipe|model|grad_clip|precision|batch_size)=")


def _subparser(command):
    return build_parser()._subparsers._group_actions[0].choices[command]


def suggested(command: str, message: str) -> list[str]:
    """The flags a message suggests, as argv for `ditlab <command>`; each must exist on that command."""
    sub, argv = _subparser(command), []
    for flag, value in FLAG.findall(message):
        action = sub._option_string_actions.get(flag)
        assert action is not None, f"`ditlab {command}` has no {flag}, but its message suggests it: {message}"
        argv += [flag] + ([value.rstrip(".:")] if action.nargs != 0 and value else [])
    return argv


def accepts(command: str, message: str, *extra: str) -> list[list[str]]:
    """Each alternative the message offers ("--resume, or a new --out-dir DIR or --overwrite": three) is a command
    line that parses (argparse exits on an unknown flag or a bad value) -> those command lines."""
    assert not PYTHON.search(message), f"a CLI message names a Python keyword: {message}"
    lines = []
    for alternative in re.split(r",\s*(?:or\s+)?|\s+or\s+", message):
        flags = suggested(command, alternative)
        if flags:
            lines.append([command, *SMOKE[command], *extra, *flags])
            build_parser().parse_args(lines[-1])
    assert lines or "--" not in message, f"no command in: {message}"
    return lines


def run_with(flag: str, lines: list[list[str]]) -> None:
    """Run the suggested command line that uses `flag`."""
    main(next(line for line in lines if flag in line))


def _cli_error(argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert str(e.value.code).startswith(f"ditlab {argv[0]}: error: "), e.value.code
    return str(e.value.code)


def test_run_folder_and_resume_refusals_suggest_flags_that_run(tmp_path):
    d = str(tmp_path / "run")
    main(["train", *SMOKE_TRAIN, "--steps", "2", "--out-dir", d])
    msg = _cli_error(["train", *SMOKE_TRAIN, "--steps", "2", "--out-dir", d])  # a second new run: refused
    assert "--resume" in msg and "--overwrite" in msg and "--out-dir DIR" in msg
    accepts("train", msg, "--out-dir", d)
    msg = _cli_error(["train", *SMOKE_TRAIN, "--steps", "1", "--resume", "--out-dir", d])  # steps below the checkpoint
    assert "--steps 2 or more" in msg
    run_with("--steps", accepts("train", msg, "--resume", "--out-dir", d))  # runs: nothing left to do at step 2
    msg = _cli_error(["train", *SMOKE_TRAIN, "--steps", "3", "--resume", "--seed", "1", "--out-dir", d])
    assert "would change" in msg
    accepts("train", msg, "--out-dir", d)
    msg = _cli_error(["train", *SMOKE_TRAIN, "--steps", "2", "--resume", "--out-dir", str(tmp_path / "none")])
    assert "--resume but" in msg
    accepts("train", msg, "--out-dir", d)
    with command_line("ditlab train"), run_folder(d, resume=True), pytest.raises(BlockingIOError) as e:
        with run_folder(d, resume=True):
            pass
    accepts("train", str(e.value), "--out-dir", d)


def test_a_checkpoint_without_training_metadata_is_refused_with_a_command(tmp_path):
    d = tmp_path / "run"
    main(["train", *SMOKE_TRAIN, "--steps", "1", "--out-dir", str(d)])
    model = ditlab.load_model(d)
    save_model(model, d / "checkpoint.safetensors")  # weights only where the training state belongs
    msg = _cli_error(["train", *SMOKE_TRAIN, "--steps", "2", "--resume", "--out-dir", str(d)])
    assert str(d / "checkpoint.safetensors") in msg and "no training metadata" in msg
    run_with("--overwrite", accepts("train", msg, "--steps", "1", "--out-dir", str(d)))  # starts over


def test_demo_twice_suggests_demo_flags_and_demo_resume_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "cache"))
    d = str(tmp_path / "demo")
    main(["demo", "--smoke", "--out-dir", d])
    printed = capsys.readouterr().out
    assert re.search(r"train: digits \(passed as dataset=, 512 images\) at 16 px, 1 ch \| DiT-Mi/8 \| 10 steps, "
                     r"batch 16 \| fp32 \| -> .*demo \| about .* left", printed), printed
    hint = json.loads((tmp_path / "demo" / "metrics.json").read_text())["verdict"]["hint"]
    msg = _cli_error(["demo", "--smoke", "--out-dir", d])
    assert "--resume" in msg and "resume=True" not in msg
    accepts("demo", msg, "--out-dir", d)
    run_with("--resume", accepts("demo", hint, "--out-dir", d))
    assert "--resume --steps 20" in hint  # the verdict's "train longer" ran: the demo went on to step 20
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["train_steps"] == 20


@pytest.mark.parametrize("accuracy, real, trend, short_paper, steps", [
    (0.97, 0.99, 0.1, False, 3000), (0.09, 0.99, 0.0, True, 2000), (0.11, 0.99, 0.2, False, 300),
    (0.60, 0.99, 0.0, False, 9000), (0.60, 0.99, None, False, 20), (0.65, 0.66, 0.0, False, 3000),
    (0.30, 0.66, 0.1, False, 300),
])
@pytest.mark.parametrize("command", ["train", "demo"])
def test_every_verdict_hint_is_a_command_that_parses(command, accuracy, real, trend, short_paper, steps):
    _, hint = assess(accuracy, 0.1, real, trend, steps, "DiT-Mi/4", short_paper, cli=True)
    if command == "demo" and ("--recipe" in hint or "--model" in hint):
        pytest.skip("the demo's recipe and model are fixed: these hints come from `ditlab train` only")
    accepts(command, hint)


def test_loop_messages_suggest_train_flags(tmp_path, monkeypatch):
    with command_line("ditlab train"):
        nan = dict(loss=torch.tensor([float("nan")]), mse=torch.zeros(1), vb=torch.zeros(1))
        with pytest.raises(FloatingPointError) as e:
            loop._finite_stats(nan, 1, 5, tmp_path)
        assert "--grad-clip 1.0" in str(e.value) and "--precision fp32" in str(e.value)
        accepts("train", str(e.value))
        with pytest.raises(MemoryError) as e, loop._out_of_memory_advice(torch.device("cuda"), loop.TrainConfig()):
            raise RuntimeError("CUDA out of memory")
        assert "--batch-size 1" in str(e.value) and "--grad-checkpointing" in str(e.value)
        accepts("train", str(e.value))

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ditlab.io.files, "save_file", full)
    msg = _cli_error(["train", *SMOKE_TRAIN, "--steps", "2", "--out-dir", str(tmp_path / "r")])
    assert "no checkpoint yet" in msg and "--resume" in msg
    accepts("train", msg, "--out-dir", str(tmp_path / "r"))


def test_the_studies_speak_their_own_flags(tmp_path):
    from ditlab.training.advice import opt

    for command in ("scaling", "objectives"):
        with command_line(f"ditlab {command}"):
            msg = f"start over with {opt('overwrite')}, or a new {opt('out_dir', 'DIR')}"
        assert "--retrain" in msg
        accepts(command, msg)
