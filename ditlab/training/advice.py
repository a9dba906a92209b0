"""Advice speaks the caller's language: flags (`--resume --steps 600`) when a `ditlab` command runs the training,
keywords (`resume=True, steps=600`) when Python does. The CLI wraps its work in `command_line("ditlab demo")`."""
from contextlib import contextmanager
from contextvars import ContextVar

from ..eval.verdict import option

COMMAND: ContextVar[str | None] = ContextVar("ditlab_command", default=None)  # e.g. "ditlab train"; None: Python
# the studies train in folders of their own: they resume by themselves, and --retrain starts a run over
STUDY_FLAGS = {"overwrite": "--retrain", "resume": "the same command again (it resumes)"}
OWN_FLAGS = {"ditlab scaling": STUDY_FLAGS, "ditlab objectives": STUDY_FLAGS}


@contextmanager
def command_line(command: str):
    """Within this block, messages give advice as flags of `command` (e.g. "ditlab demo")."""
    token = COMMAND.set(command)
    try:
        yield
    finally:
        COMMAND.reset(token)


def on_cli() -> bool:
    return COMMAND.get() is not None


def opt(name: str, value=True) -> str:
    """`--name value` on the command line (or what this command has instead), `name=value` in Python."""
    return OWN_FLAGS.get(COMMAND.get(), {}).get(name) or option(name, value, on_cli())
