"""The six pieces the student writes: patchify (01), the 2D sin-cos table (02), the adaLN-Zero block (03), the
whole DiT (04), a DDPM/DDIM step (06), a flow-matching step (07).

In a notebook a piece is a cell whose body is a solution region, nbgrader's convention:

    def my_patchify(x, p):
        # x (N, C, H, W) -> tokens (N, T, p·p·C)
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

followed by a one-line check cell, `my_patchify = build_check("patchify", my_patchify)`. The check compares the
piece with ditlab's (and with the official code's output where a fixture exists), prints "correct" or what differs
— which shape, axis, order or constant, never the answer — and returns what the rest of the notebook uses: the
student's piece when it is correct, else ditlab's, so a student who is stuck can go on. The student version of a
notebook (`python notebooks/regenerate.py --student OUT_DIR`, `ditlab.teach.student`) replaces every region by
`# your code here` and a `raise NotImplementedError`, which the check reports as "not written yet".

The checks live by topic: pieces_model.py (01–03), pieces_dit.py (04), pieces_sampling.py (06–07); their shared
toolkit is piece_tools.py. Importing this module registers them. `RESULTS` records the last outcome of every
check ("correct", "blank", "wrong"; and whether the official comparison ran), which the tests read.
"""
from . import pieces_dit, pieces_model, pieces_sampling  # noqa: F401  (importing them registers their checks)
from .piece_tools import PIECES, RESULTS, build_check, grade

__all__ = ["PIECES", "RESULTS", "build_check", "grade"]
