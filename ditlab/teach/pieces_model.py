"""The checks of the pieces of notebooks 01–03: patchify, the 2D sin-cos table, the adaLN-Zero block
(the framework and the conventions: pieces.py)."""
import torch
from einops import rearrange

from ..model import patchify
from .exercise_tools import Wrong, randn
from .piece_tools import expect_close, piece

# ---------------------------------------------------------------- 01 patchify (§3.2, Fig. 4)

# Other orders a student may produce, and what the check says about each (never the fix itself).
PATCHIFY_MISTAKES = {
    "n c (h p) (w q) -> n (h w) (c p q)": "each token holds the right numbers, flattened channel-first: within a "
                                          "token ditlab goes pixel by pixel and puts a pixel's channels together",
    "n c (h p) (w q) -> n (h w) (q p c)": "each token holds the right numbers, but the two axes inside a patch are "
                                          "swapped: rows inside a patch must vary slower than columns",
    "n c (h p) (w q) -> n (w h) (p q c)": "the tokens are in column-major order: number the patches row by row "
                                          "(the patch row varies slowest)",
    "n c (p h) (q w) -> n (h w) (p q c)": "the tokens mix pixels from all over the image: split H into (patch row, "
                                          "row inside the patch), in that order, and W likewise",
}


@piece("01_patchify", fallback=lambda: patchify, fallback_name="ditlab.model.patchify")
def _patchify(mine):
    for shape, p in (((2, 3, 8, 12), 1), ((2, 3, 8, 12), 2), ((2, 3, 8, 12), 4), ((2, 1, 32, 32), 8)):
        x = randn(*shape, seed=p)  # C = 3 and a non-square 8×12 input: a swapped axis cannot hide
        got, want = mine(x, p), patchify(x, p)
        if isinstance(got, torch.Tensor) and got.shape == want.shape and not torch.equal(got, want):
            for pattern, hint in PATCHIFY_MISTAKES.items():
                if torch.equal(got, rearrange(x, pattern, p=p, q=p)):
                    raise Wrong(f"for p = {p} on a {shape[1]}×{shape[2]}×{shape[3]} input: {hint}")
        expect_close(got, want, f"my_patchify(x, {p}) for x of shape {shape}", atol=0)
    return "Your tokens are ditlab's, in the order the official checkpoints expect."
