"""Argument checks for the boundary — the CLI, the public functions and the config objects — so the code behind it
reads as the algorithm. Each check raises one clear error naming the parameter, what it accepts and what it got,
and returns the value: `steps = integer("steps", steps, min=1)`."""
import math
from numbers import Integral, Real


def is_int(value) -> bool:
    """An int (numpy ints included), never a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An int or float (numpy scalars included), never a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def one_of(name: str, value, allowed, hint: str = ""):
    """`value` is one of `allowed` (a list, tuple, dict or set); `hint` is appended to the message."""
    try:
        ok = value in allowed
    except TypeError:  # an unhashable value against a dict or set
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {list(allowed)}{hint}, got {value!r}")
    return value


def _bounds(lo, hi, lo_open: bool) -> str:
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    if lo is None:
        return f"<= {hi}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}]"


def integer(name: str, value, min: int | None = None, max: int | None = None):
    """An int (not a bool) in [min, max]."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if (min is not None and value < min) or (max is not None and value > max):
        raise ValueError(f"{name} must be an int {_bounds(min, max, False)}, got {value!r}")
    return int(value)


def number(name: str, value, min: float | None = None, max: float | None = None, above: float | None = None):
    """A finite int or float (not a bool) in [min, max], or > `above`."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    lo, lo_open = (above, True) if above is not None else (min, False)
    if (lo is not None and (value <= lo if lo_open else value < lo)) or (max is not None and value > max):
        raise ValueError(f"{name} must be a number {_bounds(lo, max, lo_open)}, got {value!r}")
    return value


def positive(name: str, value):
    """A finite number > 0 (an int stays an int)."""
    return number(name, value, above=0)


def finite(name: str, value):
    """A finite number, any sign."""
    return number(name, value)


def of_type(name: str, value, types, what: str):
    """`isinstance(value, types)` (bools are never ints), else a TypeError saying `what` is expected."""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def refuse(what: str, problems, error=ValueError) -> None:
    """One error naming every problem found: `problems` is [(is_bad, why), ...]; nothing happens when none is bad.
    `refuse("cannot convert", [(c.block != "adaLN-Zero", f"block={c.block!r}"), ...])`."""
    found = [why for bad, why in problems if bad]
    if found:
        raise error(f"{what}: {'; '.join(found)}" if what else "; ".join(found))
