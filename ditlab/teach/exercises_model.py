"""The checks of notebooks 00–04: the tour, patchify, positional embeddings, the blocks, the whole model."""
import numpy as np
import torch

from ..eval import count_params, estimate_flops, flops_breakdown, paper_table
from ..model import CrossAttentionBlock, InContextBlock, get_config, patchify, sincos_1d, sincos_2d
from .exercise_tools import call, exercise, expect, randn, same_outputs


# ---------------------------------------------------------------- 00 tour

@exercise("00_tour")
def _best_under_25(answer):
    cheap = {r["model"]: r["fid50k_400k"] for r in paper_table("adaLN-Zero", 256) if r["gflops"] <= 25}
    expect(answer in cheap, "pick a model with at most 25 Gflops, named like 'DiT-S/2'")
    expect(answer == min(cheap, key=cheap.get), "lower FID is better")
    return "It beats the 3.5× larger DiT-L/4 at about the same Gflops."


@exercise("00_tour")
def _even_digits(answer):
    expect(hasattr(answer, "labels"), "ditlab.sample returns a Samples object: assign it as it is")
    expect(answer.labels.tolist() == [0, 2, 4, 6, 8], "one image of every even digit, in increasing order")


# ---------------------------------------------------------------- 01 patchify

@exercise("01_patchify")
def _tokens_512(answer):
    cfg = get_config("DiT-XL/2", input_size=512 // 8)
    expect(answer == cfg.num_tokens, "the latent side is I = 512 / 8; then T = (I/p)²")
    return f"That costs {estimate_flops(cfg) / 1e9:.1f} Gflops per forward pass (paper: 524.6)."


@exercise("01_patchify")
def _unpatchify(answer):
    probe = randn(2, 3, 8, 12)  # C = 3, not square
    for p in (1, 2, 4):
        got = call(answer, patchify(probe, p), p, 8 // p, 12 // p)
        expect(torch.equal(got, probe), f"unpatchify(patchify(x)) != x for p = {p} (C = 3, an 8×12 image)")


@exercise("01_patchify")
def _costlier(answer):
    g = {name: estimate_flops(name) for name in ("DiT-L/4", "DiT-B/2")}
    expect(answer in g, "answer 'DiT-L/4' or 'DiT-B/2'")
    expect(answer == max(g, key=g.get), "measure both with estimate_flops")
    return "Tokens can matter more than parameters."


# ---------------------------------------------------------------- 02 positional embeddings

@exercise("02_positional_embeddings")
def _changed_channels(answer, D):
    half = sincos_1d(D // 2, np.array([0.0, 1.0]))  # float64: the column half of tokens 0 and 1
    expect(answer == int((half[0] != half[1]).sum()), "which half of the channels encodes the column, and how "
                                                        "many of its channels move when the column does?")
    return "Only the column half moves; the row half is identical along a row."


@exercise("02_positional_embeddings")
def _sincos_rect(answer):
    for dim, gh, gw in ((16, 2, 3), (64, 4, 6), (32, 5, 1)):
        got = torch.as_tensor(np.asarray(call(answer, dim, gh, gw)), dtype=torch.float64)
        expect(got.shape == (gh * gw, dim), f"shape (gh·gw, dim) = ({gh * gw}, {dim}), got {tuple(got.shape)}")
        expect(torch.allclose(got.float(), sincos_2d(dim, (gh, gw)), atol=1e-5),
                f"wrong values for a {gh}×{gw} grid: tokens go row by row, columns first in the channels")
    return "The same table now serves any latent shape, e.g. a 16×24 latent."


@exercise("02_positional_embeddings")
def _cos_sim_offsets(answer):
    E = sincos_2d(64, 8).double()
    u, v = E[1 * 8 + 2], E[4 * 8 + 7]
    expect(abs(float(answer) - float(u @ v / u.norm() / v.norm())) < 1e-5,
            "the offsets are 3 rows and 5 columns; each half is a 32-wide 1D table with norm √16")


# ---------------------------------------------------------------- 03 conditioning and blocks

@exercise("03_conditioning_and_blocks")
def _cross_attention_block(answer):
    x, cond = randn(2, 6, 32), randn(2, 2, 32, seed=1)
    same_outputs(answer, CrossAttentionBlock, x, cond)
    return "Self-attention, then cross-attention over [t; y], then the MLP."


@exercise("03_conditioning_and_blocks")
def _in_context_block(answer):
    same_outputs(answer, InContextBlock, randn(2, 6 + 2, 32))
    return "A plain ViT block: t and y ride along as two tokens."


@exercise("03_conditioning_and_blocks")
def _extra_params(answer):
    D = 1152
    expect(answer == 2 * D * D + 2 * D, "count the weights and biases of the two extra D-wide outputs")
    return f"× 28 blocks = {28 * answer / 1e6:.1f} M of DiT-XL/2's parameters."


# ---------------------------------------------------------------- 04 build the model

@exercise("04_build_the_model")
def _in_context_flops(answer):
    for name, size in (("DiT-S/2", 32), ("DiT-XL/4", 32), ("DiT-Nano/2", 16)):
        cfg = get_config(name, input_size=size, block="in-context")
        got = call(answer, cfg)
        expect(int(got) == estimate_flops(cfg), f"wrong for {name} at {size}×{size}: every block sees T + 2 tokens, "
                                                 "the patch embedding and final layer only T; no adaLN")
    return "Two more tokens cost almost nothing: in-context's Gflops are adaLN-Zero's."


@exercise("04_build_the_model")
def _xl2_params(answer):
    expect(answer == count_params("DiT-XL/2"), "build your model with DiT-XL/2's sizes on the meta device and "
                                                "sum p.numel() over its parameters (the sin-cos table is not one)")
    return "Table 4 rounds it to 675 M."


@exercise("04_build_the_model")
def _attention_overtakes_mlp(answer):
    def scores_win(side):
        f = flops_breakdown(get_config("DiT-XL/2", input_size=side))
        return f["attention scores"] > f["MLP"]
    first = next(side for side in range(2, 1024, 2) if scores_win(side))
    expect(isinstance(answer, int) and answer % 2 == 0, "an even latent side (DiT-XL/2 has p = 2)")
    expect(answer == first, "compare 2·T²·D with 2·T·D·4D, or loop over latent sides with your Gflops count")
    return f"T > 4D tokens: a {first * 8} px image. Below that, the MLP dominates."
