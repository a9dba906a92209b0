"""The notebooks' exercise checks: `check(name, answer, **context)` in a notebook's check cell.

A check prints "<name>: correct! ..." (and a remark that only makes sense once solved), or "not answered yet" when the
answer is None (or a function or class that still returns None); a wrong answer raises `Wrong` (an AssertionError)
with a hint. Hints never print the expected value, so a student cannot read the answer off a failed check, and the
check cells stay one line. `EXERCISES` lists every name with the notebook it belongs to.

The checks themselves live by topic: `exercises_model` (notebooks 00–04), `exercises_diffusion` (05–07, 09),
`exercises_latent` (08) and `exercises_explore` (10–12); `exercise_tools` is what they share. Importing them registers their checks.
"""
from . import exercises_model, exercises_diffusion, exercises_latent, exercises_explore  # noqa: F401  (notebook order: they register)
from .exercise_tools import EXERCISES, Unanswered, Wrong

__all__ = ["EXERCISES", "Wrong", "check"]


def check(name: str, answer, **context) -> None:
    """Check `answer` to exercise `name`: prints "correct!" or "not answered yet", raises `Wrong` (with a hint)
    when wrong. `context`: what the exercise refers to in the notebook (e.g. `rows=rows`)."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; known: {', '.join(sorted(EXERCISES))}")
    __tracebackhide__ = True  # IPython and pytest show the check cell, not this module
    try:
        if answer is None:
            raise Unanswered
        remark = EXERCISES[name][1](answer, **context)
    except Unanswered:
        print(f"{name}: not answered yet")
        return
    except Wrong as e:
        hint = str(e)
    else:
        print(f"{name}: correct!" + (f" {remark}" if remark else ""))
        return
    raise Wrong(f"{name}: {hint}") from None
