"""The toolkit of the pieces' checks (`ditlab.teach.pieces`): the registry, grading, and `expect_close`, which says
how a tensor differs from the expected one without printing it."""
from dataclasses import dataclass
from typing import Callable

import torch

from .exercise_tools import Unanswered, Wrong


@dataclass(frozen=True)
class Piece:
    notebook: str  # e.g. "01_patchify"
    check: Callable  # check(mine, **context) -> remark | None; raises Wrong (a hint) or Unanswered
    fallback: Callable  # () -> ditlab's piece, in the form the notebook's later cells call it
    fallback_name: str  # what the fallback is, for the message, e.g. "ditlab.model.patchify"


PIECES: dict[str, Piece] = {}
RESULTS: dict[str, dict] = {}  # name -> {"outcome": "correct" | "blank" | "wrong", "official": bool | None}
_official: dict[str, bool] = {}  # set by `official_ran` while a check runs


def piece(notebook: str, fallback: Callable, fallback_name: str):
    """Register a piece's check under its function's name without the leading underscore."""
    def register(fn):
        PIECES[fn.__name__.removeprefix("_")] = Piece(notebook, fn, fallback, fallback_name)
        return fn
    return register


def official_ran(name: str, ran: bool = True) -> None:
    """Called by a check: the comparison with the official code's output ran (or could not: `ran=False`)."""
    _official[name] = ran


def grade(name: str, mine, **context) -> tuple[str, str]:
    """(outcome, message) of piece `name`: outcome "correct", "blank" (not written yet) or "wrong" (the message
    says what differs). Exceptions raised by the student's code become "wrong" with the exception named."""
    if name not in PIECES:
        raise ValueError(f"unknown piece {name!r}; the pieces are: {', '.join(PIECES)}")
    _official.pop(name, None)
    try:
        if mine is None:
            raise Unanswered
        with torch.random.fork_rng():  # a check never moves the notebook's random state
            remark = PIECES[name].check(mine, **context)
    except (Unanswered, NotImplementedError):
        outcome, message = "blank", f"{name}: not written yet"
    except Wrong as e:
        outcome, message = "wrong", f"{name}: {e}"
    except Exception as e:  # noqa: BLE001  the student's code failed: say how, the notebook goes on
        outcome, message = "wrong", f"{name}: your code raised {type(e).__name__}: {e}"
    else:
        outcome, message = "correct", f"{name}: correct!" + (f" {remark}" if remark else "")
    RESULTS[name] = {"outcome": outcome, "official": _official.get(name)}
    return outcome, message


def build_check(name: str, mine, **context):
    """Check the student's piece, print the verdict and return what the notebook goes on with: `mine` when it is
    correct, ditlab's piece otherwise (saying so)."""
    outcome, message = grade(name, mine, **context)
    print(message)
    if outcome == "correct":
        return mine
    print(f"  The cells below use {PIECES[name].fallback_name} instead, so you can go on; "
          "fix your piece and rerun its cell and this one to use yours.")
    return PIECES[name].fallback()


# ---- what the checks share ---------------------------------------------------------------------------------
def expect_close(got, want, what: str, atol: float = 1e-5, rtol: float = 0.0) -> None:
    """Raise Wrong saying how `got` differs from `want`: type, shape, dtype, the same numbers in another order, a
    sign, a constant factor, or just different values. Never prints `want`."""
    if got is None:
        raise Unanswered
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(got)
        except (TypeError, ValueError, RuntimeError):
            raise Wrong(f"{what} must be a tensor (or an array), got {type(got).__name__}") from None
    want = want.to(torch.float64)
    if tuple(got.shape) != tuple(want.shape):
        raise Wrong(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    got = got.detach().to(torch.float64)
    if torch.allclose(got, want, atol=atol, rtol=rtol):
        return
    if not torch.isfinite(got).all():
        raise Wrong(f"{what} contains NaN or inf")
    hint = "different values"
    if torch.allclose(got.flatten().sort().values, want.flatten().sort().values, atol=atol, rtol=rtol):
        hint = "the right numbers in the wrong order: check which axes you split, permute and flatten"
    elif torch.allclose(-got, want, atol=atol, rtol=rtol):
        hint = "the right values with the wrong sign"
    elif want.abs().max() > 0 and got.abs().max() > 0:
        ratio = float(got.flatten() @ want.flatten() / (want.flatten() @ want.flatten()))
        if abs(ratio - 1) > 1e-3 and torch.allclose(got, ratio * want, atol=atol, rtol=1e-4):
            hint = f"the right values times {ratio:.4g}: a constant factor is off"
    raise Wrong(f"{what} differs: {hint} (max difference {float((got - want).abs().max()):.2e})")

