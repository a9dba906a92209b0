"""Sentences computed from the numbers they describe, for the notebooks' claims next to a measurement: a reading of
a small model's run can differ from what the paper's large models show, so the text is derived, not written."""
from collections.abc import Mapping, Sequence

import numpy as np


def settling(rms: Sequence[float], tol: float = 0.1) -> dict:
    """How a sampling trajectory's guess x̂_0 approaches the final image. `rms[i]`: the RMS distance of step i's
    x̂_0 to the final sample (the last one is 0). Returns dict(steps, half (first step under half the first
    distance), settled (first step under `tol`), shape: "quickly" (half the distance gone in the first third of
    the steps), "late" (half of it still there after two thirds), else "steadily")."""
    r = np.asarray(rms, dtype=float)
    if r.ndim != 1 or len(r) < 2 or not np.isfinite(r).all() or r[0] <= 0:
        raise ValueError("rms must be at least two finite distances, the first positive")
    half = int(np.argmax(r < r[0] / 2))
    settled = int(np.argmax(r < tol)) if (r < tol).any() else None
    frac = half / (len(r) - 1)
    shape = "quickly" if frac <= 1 / 3 else "late" if frac >= 2 / 3 else "steadily"
    return dict(steps=len(r), half=half, settled=settled, shape=shape)


def describe_settling(rms: Sequence[float], tol: float = 0.1) -> str:
    s = settling(rms, tol)
    how = dict(quickly="drops quickly: the early steps fix most of the image",
               steadily="falls steadily, close to linearly: every step does a similar share of the work",
               late="stays high for long and falls late: the last steps still change the image a lot")[s["shape"]]
    settled = (f"it is within {tol:g} of the final image from step {s['settled'] + 1} of {s['steps']}"
               if s["settled"] is not None else f"it never comes within {tol:g} before the last step")
    return f"The distance {how}. Half of it is gone at step {s['half'] + 1} of {s['steps']}; {settled}."


def describe_variety(variety: Mapping[float, float], same: float = 0.05) -> str:
    """`variety`: guidance scale -> spread of the samples of one class. Says whether the spread falls, rises or
    stays within `same` (relative) from the lowest to the highest scale, with the numbers."""
    if len(variety) < 2:
        raise ValueError("variety needs at least two guidance scales")
    lo, hi = min(variety), max(variety)
    a, b = variety[lo], variety[hi]
    change = b / a - 1
    numbers = f"{a:.3f} at s = {lo:g}, {b:.3f} at s = {hi:g}"
    if abs(change) < same:
        return (f"The variety hardly changes ({numbers}): this model does not show the trade of diversity for "
                "fidelity here; a better-trained model (or more samples) would.")
    if change < 0:
        return f"The variety falls by {-change:.0%} ({numbers}): guidance trades diversity for fidelity."
    return f"The variety rises by {change:.0%} ({numbers}): unlike a well-trained model, guidance adds spread here."
