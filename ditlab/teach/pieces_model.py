"""The checks of the pieces of notebooks 01–03: patchify, the 2D sin-cos table, the adaLN-Zero block
(the framework and the conventions: pieces.py)."""
import copy
import functools
import itertools

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..checkpoint import load_model
from ..io import fixture_path, load_tensors
from ..model import AdaLNZeroBlock, patchify, sincos_2d
from .exercise_tools import Wrong, randn
from .piece_tools import expect_close, official_ran, piece


def _wrong_if(condition, hint: str) -> None:
    if condition:
        raise Wrong(hint)


@functools.lru_cache(maxsize=1)
def _reference() -> dict:
    """The official DiT code's outputs on the tiny fixture config (data/fixtures/README.md)."""
    return load_tensors(fixture_path("official_dit/reference.safetensors"))[0]


@functools.lru_cache(maxsize=1)
def _official_model():
    """The tiny DiT with the official fixture weights (never handed out: the checks use copies)."""
    return load_model(fixture_path("official_dit/DiT-tiny-release.pt"))


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


# ---------------------------------------------------------------- 02 the 2D sin-cos table (§3.2, as in MAE)

def ditlab_sincos_2d(dim, g):
    """ditlab.model.sincos_2d in the form of notebook 02's `my_sincos_2d(dim, g)`: a (g·g, dim) numpy array."""
    return sincos_2d(dim, g).double().numpy()


# Ways to lay the right numbers out wrong, and what the check says about each. Each undoes itself: applied to
# a student's table it gives the table the student meant, in ditlab's layout. On a square grid, numbering the
# tokens column by column gives the same table as swapping the column and row halves: the hint names both.
LAYOUT_MISTAKES = {
    "rows_cols": "rows and columns are exchanged: either the tokens are numbered column by column (patchify numbers "
                 "them row by row), or the column and row halves of the channels are swapped; on a square grid both "
                 "give this table",
    "sin_cos": "inside each half the sines and the cosines are swapped",
}


def _relayout(table, g, mistake):  # (T, D) -> (T, D)
    if mistake == "rows_cols":
        return rearrange(table, "(h w) d -> (w h) d", h=g)
    blocks = rearrange(table, "t (half two k) -> t half two k", half=2, two=2)  # [[col sin, col cos], [row ...]]
    return rearrange(blocks.flip(2), "t half two k -> t (half two k)")  # sin <-> cos inside each half


def _table(omega, g):  # (D/4,) frequencies -> (g·g, D): ditlab's layout with any frequencies
    rows, cols = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    angle = lambda pos: pos.reshape(-1, 1).double() * omega  # noqa: E731  (T, D/4)
    return torch.cat([angle(cols).sin(), angle(cols).cos(), angle(rows).sin(), angle(rows).cos()], dim=1)


def _frequency_hint(got, want) -> str:
    """What is off with the student's frequencies ω_k (D/4,), positive and exact up to 2π, vs ditlab's."""
    k = torch.arange(len(want), dtype=torch.float64)
    if len(want) < 2 or (got <= 0).any() or (got > torch.pi - 1e-6).any():
        return "the frequencies ω_k differ from the 1D table's (§2): check the base, the exponent and the angle"
    slope, start = torch.linalg.lstsq(torch.stack([k, torch.ones_like(k)], 1), got.log()[:, None]).solution[:, 0]
    rate = float(slope / want.log()[1])  # how fast log ω falls along the channels, relative to ditlab's
    if abs(start) > 1e-3 or not torch.allclose(start + slope * k, got.log(), atol=1e-4):
        return "the frequencies ω_k are not the 1D table's (§2): check where the channel index k starts and ends"
    if abs(rate - round(rate * 4) / 4) < 1e-3 and round(rate * 4) in (1, 2):  # ×1/4, ×1/2: a denominator too big
        return (f"the frequencies ω_k fall off {1 / rate:g}× too slowly along the channels: check the exponent's "
                "denominator (how many frequencies does one sin block hold?), and the base")
    power = 4 * rate  # log10 of the base their frequencies have if only the base is off
    looks = f"your base looks like {10 ** round(power):g}; " if abs(power - round(power)) < 1e-3 else ""
    return (f"the frequencies ω_k fall off {'too slowly' if rate < 1 else 'too fast'} along the channels: "
            f"{looks}check the frequency base and the exponent")


def _explain_table(got, want, g) -> None:
    """Raise Wrong with what differs, if the student's table is ditlab's layout mistakes applied to a table with
    some frequencies; else return (expect_close then says how the numbers differ)."""
    n = want.shape[1] // 4
    omega = torch.atan2(want[1, :n], want[1, n: 2 * n])  # ditlab's frequencies, read off token 1 = (row 0, col 1)
    for k in range(len(LAYOUT_MISTAKES) + 1):
        for mistakes in itertools.combinations(LAYOUT_MISTAKES, k):
            meant = got
            for m in mistakes:
                meant = _relayout(meant, g, m)
            theirs = torch.atan2(meant[1, :n], meant[1, n: 2 * n])  # their frequencies, the same way
            if torch.allclose(_table(theirs, g), meant, atol=1e-5):
                hints = [LAYOUT_MISTAKES[m] for m in mistakes]
                if not torch.allclose(theirs, omega, atol=1e-6):
                    hints.append(_frequency_hint(theirs, omega))
                _wrong_if(hints, "; and ".join(hints))


@piece("02_positional_embeddings", fallback=lambda: ditlab_sincos_2d, fallback_name="ditlab.model.sincos_2d")
def _sincos_2d(mine):
    for dim, g in ((16, 3), (32, 5), (64, 4), (96, 6), (256, 16)):
        got, want = mine(dim, g), sincos_2d(dim, g).double()
        what = f"my_sincos_2d({dim}, {g})"
        if isinstance(got, torch.Tensor) or hasattr(got, "__array__"):
            got = torch.as_tensor(got).detach().to(torch.float64)
            _wrong_if(got.ndim == 2 and got.shape[0] == g * g and got.shape[1] != dim,
                      f"{what} has {got.shape[1]} channels, expected {dim}: each coordinate gets half of them")
            if got.shape == want.shape and not torch.allclose(got, want, atol=1e-5):
                _explain_table(got, want, g)
        expect_close(got, want, what, atol=1e-5)
    try:
        reference = _reference()
    except FileNotFoundError:
        official_ran("sincos_2d", False)
        return "Your table is ditlab's (the official code's fixture is not here to compare with)."
    for dim, g in ((64, 4), (96, 6)):
        expect_close(mine(dim, g), reference[f"pos_embed_{dim}_{g}"].double(), f"my_sincos_2d({dim}, {g}) vs the "
                     "official code's table", atol=1e-5)
    official_ran("sincos_2d")
    return "Your table is ditlab's, and the official DiT code's for dims 64 and 96 on 4×4 and 6×6 grids."


# ---------------------------------------------------------------- 03 the adaLN-Zero block (§3.2, Fig. 3)

ROLES = ("the attention's shift", "the attention's scale", "the attention's gate",
         "the MLP's shift", "the MLP's scale", "the MLP's gate")  # the six chunks, in ditlab's (official) order


def adaln_zero_forward(ref, x, c, order=tuple(range(6)), gates=(True, True), one_plus=True, eps=1e-6):
    """ditlab's adaLN-Zero forward on the weights of `ref` (an AdaLNZeroBlock), or one of its likely mistakes: the
    six chunks used as `order` says (role i gets chunk order[i]; a list of P orders gives P outputs, (P, N, T, D),
    in one batched pass), a gate left out (`gates`: attention's, MLP's), scale instead of 1 + scale, another eps."""
    orders = torch.as_tensor(order).reshape(-1, 6)  # (P, 6)
    chunks = torch.stack(ref.adaLN_modulation(c).chunk(6, dim=-1))[orders]  # (P, 6, N, D)
    shift1, scale1, gate1, shift2, scale2, gate2 = rearrange(chunks, "p six n d -> six (p n) 1 d")  # (P·N, 1, D)

    def branch(layer, h, shift, scale, gate, gated):  # (P·N, T, D) -> (P·N, T, D)
        h = F.layer_norm(h, h.shape[-1:], eps=eps) * ((1 + scale) if one_plus else scale) + shift
        return layer(h) * (gate if gated else 1)

    h = x.repeat(len(orders), 1, 1)  # (P·N, T, D)
    h = h + branch(ref.attn, h, shift1, scale1, gate1, gates[0])
    h = h + branch(ref.mlp, h, shift2, scale2, gate2, gates[1])
    return h.reshape(len(orders), *x.shape) if torch.as_tensor(order).ndim == 2 else h


FORWARD_MISTAKES = (
    (dict(gates=(False, False)), "the gates are missing: each branch must be multiplied by its gate before the "
                                 "residual sum"),
    (dict(gates=(False, True)), "the attention's gate is missing: its branch must be multiplied by it before the "
                                "residual sum"),
    (dict(gates=(True, False)), "the MLP's gate is missing: its branch must be multiplied by it before the residual "
                                "sum"),
    (dict(one_plus=False), "the modulation multiplies by the scale itself: a zero scale must leave the normalised "
                           "tokens as they are"),
    (dict(eps=1e-5), "the LayerNorms' eps differs from the one given (yours is PyTorch's default)"),
)


def _chunk_hint(order) -> str:
    wrong = [ROLES[i] for i in range(6) if order[i] != i]
    if tuple(order) == (3, 4, 5, 0, 1, 2):
        return "the attention's three chunks and the MLP's three are swapped"
    if len(wrong) == 2:
        return f"two of the six chunks are swapped: the ones you use as {wrong[0]} and as {wrong[1]}"
    return (f"the six chunks are in another order than the official checkpoints': {len(wrong)} of them are in the "
            f"wrong place ({', '.join(wrong)})")


def _explain_block(out, want, ref, x, c) -> None:
    """Raise Wrong naming the mistake, if the student's output `out` is not `want` but one of its likely mistakes."""
    if torch.allclose(out, want, atol=1e-5):
        return
    for options, hint in FORWARD_MISTAKES:
        _wrong_if(torch.allclose(out, adaln_zero_forward(ref, x, c, **options), atol=1e-5), hint)
    orders = list(itertools.permutations(range(6)))  # 720 orders of the six chunks, in one batched pass
    for order, theirs in zip(orders, adaln_zero_forward(ref, x, c, orders)):
        _wrong_if(torch.allclose(out, theirs, atol=1e-5), _chunk_hint(order))


def _official_with(block_cls):
    """The official tiny DiT's output on the fixture's x, t, y with its blocks rebuilt as `block_cls`."""
    model, reference = copy.deepcopy(_official_model()), _reference()
    cfg = model.config
    blocks = nn.ModuleList(block_cls(cfg.hidden_size, cfg.num_heads, cfg.mlp_ratio) for _ in model.blocks)
    for new, old in zip(blocks, model.blocks):
        new.load_state_dict(old.state_dict())  # the official checkpoint's block weights, by name
    model.blocks = blocks
    with torch.no_grad():
        return model.eval()(reference["x"], reference["t"], reference["y"]), reference["out"]


@piece("03_conditioning_and_blocks", fallback=lambda: AdaLNZeroBlock, fallback_name="ditlab.model.AdaLNZeroBlock")
def _adaln_zero_block(mine):
    dim, heads = 32, 4
    ref, fresh = AdaLNZeroBlock(dim, heads), mine(dim, heads)
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    missing, unexpected = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    _wrong_if([k for k in unexpected if k.startswith(("norm1.", "norm2."))],
              "your LayerNorms have a learned scale and shift: in adaLN they come from c, so the norms hold no "
              "parameters")
    _wrong_if(missing or unexpected, "name the sub-modules as ditlab's block (and the official checkpoints) do: "
                                     f"missing {missing}, unexpected {unexpected}")
    shapes = [f"{k} is {got[k]}, ditlab's {want[k]}" for k in want if got[k] != want[k]]
    _wrong_if(shapes, "some weights have other shapes: " + "; ".join(shapes))
    norms = [getattr(fresh, n, None) for n in ("norm1", "norm2")]  # parameter-free: not in the state dict
    eps = {m.eps for m in norms if isinstance(m, nn.LayerNorm)}
    _wrong_if(eps - {1e-6}, "the LayerNorms' eps differs from the one given above")

    block = copy.deepcopy(fresh)
    with torch.no_grad():
        for seed, p in enumerate(ref.parameters()):
            p.add_(0.1 * randn(*p.shape, seed=seed))  # open gates, no zero or unit weights to hide a mistake
        block.load_state_dict(ref.state_dict())
        c = randn(2, dim, seed=1)
        for x in (randn(2, 6, dim), 1e-3 * randn(2, 6, dim, seed=2)):  # small tokens: the LayerNorm eps shows
            out, want_out = block(x, c), ref(x, c)  # (N, T, D)
            if isinstance(out, torch.Tensor) and out.shape == want_out.shape:
                _explain_block(out, want_out, ref, x, c)
            expect_close(out, want_out, "your block's output with ditlab's weights", atol=1e-5)
        zero = fresh.state_dict()
        _wrong_if([k for k in ("adaLN_modulation.1.weight", "adaLN_modulation.1.bias") if zero[k].abs().max() > 0],
                  "a fresh block must be the identity: zero-initialise the regression's last layer, weight and bias")
        _wrong_if(not torch.equal(fresh(x, c), x), "a fresh block must return its input exactly")
    try:
        out, official = _official_with(mine)
    except FileNotFoundError:
        official_ran("adaln_zero_block", False)
        return "Weight for weight ditlab's block, and the identity when fresh."
    expect_close(out, official, "the official tiny DiT's output with your blocks", atol=1e-5)
    official_ran("adaln_zero_block")
    return ("Weight for weight ditlab's block, the identity when fresh, and the official tiny DiT with your blocks "
            "gives the official code's output.")
