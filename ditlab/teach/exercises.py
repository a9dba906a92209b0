"""The notebooks' exercise checks: `check(name, answer, **context)` in a notebook's check cell.

A check prints "<name>: correct! ..." (and a remark that only makes sense once solved), or "not answered yet" when the
answer is None (or a function or class that still returns None); a wrong answer raises `Wrong` (an AssertionError)
with a hint. Hints never print the expected value, so a student cannot read the answer off a failed check, and the
check cells stay one line. `EXERCISES` lists every name with the notebook it belongs to.
"""
import math

import numpy as np
import torch
from matplotlib.figure import Figure

from ..data.imagenet import imagenet_class_index, imagenet_classes
from ..diffusion import create_diffusion, create_flow, get_beta_schedule, get_path, ode_sample
from ..eval import count_params, estimate_flops, flops_breakdown, paper_table
from ..hub.pretrained import paper_settings
from ..model import CrossAttentionBlock, InContextBlock, build_model, get_config, patchify, sincos_1d, sincos_2d
from ..sampling import sample

EXERCISES: dict[str, tuple[str, object]] = {}  # name -> (notebook, check function)


class Wrong(AssertionError):
    """A wrong answer; the message is a hint, never the expected value."""


class _Unanswered(Exception):
    pass


def _exercise(notebook: str):
    def register(fn):
        EXERCISES[fn.__name__.removeprefix("_")] = (notebook, fn)
        return fn
    return register


def check(name: str, answer, **context) -> None:
    """Check `answer` to exercise `name`: prints "correct!" or "not answered yet", raises `Wrong` (with a hint)
    when wrong. `context`: what the exercise refers to in the notebook (e.g. `rows=rows`)."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; known: {', '.join(sorted(EXERCISES))}")
    __tracebackhide__ = True  # IPython and pytest show the check cell, not this module
    try:
        if answer is None:
            raise _Unanswered
        remark = EXERCISES[name][1](answer, **context)
    except _Unanswered:
        print(f"{name}: not answered yet")
        return
    except Wrong as e:
        hint = str(e)
    else:
        print(f"{name}: correct!" + (f" {remark}" if remark else ""))
        return
    raise Wrong(f"{name}: {hint}") from None


def _expect(ok: bool, hint: str):
    if not ok:
        raise Wrong(f"not quite: {hint}")


def _call(fn, *args):
    """Call the student's function; None back means not answered yet."""
    out = fn(*args)
    if out is None:
        raise _Unanswered
    return out


def _randn(*shape, seed: int = 0) -> torch.Tensor:
    """A fixed probe that leaves the notebook's random state alone."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _close(a, b, rel: float = 0.01) -> bool:
    return abs(float(a) / float(b) - 1) < rel


def _same_outputs(student_cls, ref_cls, *inputs, dim: int = 32, heads: int = 4):
    """Build the student's block and ditlab's `ref_cls` as (dim, heads), copy ditlab's perturbed weights into the
    student's, compare the outputs. The notebook's random state is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = ref_cls(dim, heads)
        with torch.no_grad():
            for p in ref.parameters():
                p.add_(0.1 * torch.randn_like(p))  # no zero or unit weights that could hide a mistake
        mine = student_cls(dim, heads)
    if mine is None or not list(mine.parameters()):
        raise _Unanswered
    try:
        missing, unexpected = mine.load_state_dict(ref.state_dict(), strict=False)
    except RuntimeError as e:  # a shape differs
        raise Wrong(f"not quite: ditlab's weights do not fit your block's shapes: {e}") from None
    _expect(not missing and not unexpected, f"name the sub-modules like ditlab's block; missing {list(missing)}, "
                                            f"unexpected {list(unexpected)}")
    with torch.no_grad():
        out, want = mine.eval()(*inputs), ref.eval()(*inputs)
    if out is None:
        raise _Unanswered
    _expect(out.shape == want.shape, f"the output must have shape {tuple(want.shape)}, got {tuple(out.shape)}")
    _expect(torch.allclose(out, want, atol=1e-5), "same weights, different outputs: check the order of the "
                                                  "sub-layers and where each LayerNorm and residual goes")


# ---------------------------------------------------------------- 00 tour

@_exercise("00_tour")
def _best_under_25(answer):
    cheap = {r["model"]: r["fid50k_400k"] for r in paper_table("adaLN-Zero", 256) if r["gflops"] <= 25}
    _expect(answer in cheap, "pick a model with at most 25 Gflops, named like 'DiT-S/2'")
    _expect(answer == min(cheap, key=cheap.get), "lower FID is better")
    return "It beats the 3.5× larger DiT-L/4 at about the same Gflops."


@_exercise("00_tour")
def _even_digits(answer):
    _expect(hasattr(answer, "labels"), "ditlab.sample returns a Samples object: assign it as it is")
    _expect(answer.labels.tolist() == [0, 2, 4, 6, 8], "one image of every even digit, in increasing order")


# ---------------------------------------------------------------- 01 patchify

@_exercise("01_patchify")
def _tokens_512(answer):
    cfg = get_config("DiT-XL/2", input_size=512 // 8)
    _expect(answer == cfg.num_tokens, "the latent side is I = 512 / 8; then T = (I/p)²")
    return f"That costs {estimate_flops(cfg) / 1e9:.1f} Gflops per forward pass (paper: 524.6)."


@_exercise("01_patchify")
def _unpatchify(answer):
    probe = _randn(2, 3, 8, 12)  # C = 3, not square
    for p in (1, 2, 4):
        got = _call(answer, patchify(probe, p), p, 8 // p, 12 // p)
        _expect(torch.equal(got, probe), f"unpatchify(patchify(x)) != x for p = {p} (C = 3, an 8×12 image)")


@_exercise("01_patchify")
def _costlier(answer):
    g = {name: estimate_flops(name) for name in ("DiT-L/4", "DiT-B/2")}
    _expect(answer in g, "answer 'DiT-L/4' or 'DiT-B/2'")
    _expect(answer == max(g, key=g.get), "measure both with estimate_flops")
    return "Tokens can matter more than parameters."


# ---------------------------------------------------------------- 02 positional embeddings

@_exercise("02_positional_embeddings")
def _changed_channels(answer, D):
    half = sincos_1d(D // 2, np.array([0.0, 1.0]))  # float64: the column half of tokens 0 and 1
    _expect(answer == int((half[0] != half[1]).sum()), "which half of the channels encodes the column, and how "
                                                        "many of its channels move when the column does?")
    return "Only the column half moves; the row half is identical along a row."


@_exercise("02_positional_embeddings")
def _sincos_rect(answer):
    for dim, gh, gw in ((16, 2, 3), (64, 4, 6), (32, 5, 1)):
        got = torch.as_tensor(np.asarray(_call(answer, dim, gh, gw)), dtype=torch.float64)
        _expect(got.shape == (gh * gw, dim), f"shape (gh·gw, dim) = ({gh * gw}, {dim}), got {tuple(got.shape)}")
        _expect(torch.allclose(got.float(), sincos_2d(dim, (gh, gw)), atol=1e-5),
                f"wrong values for a {gh}×{gw} grid: tokens go row by row, columns first in the channels")
    return "The same table now serves any latent shape, e.g. a 16×24 latent."


@_exercise("02_positional_embeddings")
def _cos_sim_offsets(answer):
    E = sincos_2d(64, 8).double()
    u, v = E[1 * 8 + 2], E[4 * 8 + 7]
    _expect(abs(float(answer) - float(u @ v / u.norm() / v.norm())) < 1e-5,
            "the offsets are 3 rows and 5 columns; each half is a 32-wide 1D table with norm √16")


# ---------------------------------------------------------------- 03 conditioning and blocks

@_exercise("03_conditioning_and_blocks")
def _cross_attention_block(answer):
    x, cond = _randn(2, 6, 32), _randn(2, 2, 32, seed=1)
    _same_outputs(answer, CrossAttentionBlock, x, cond)
    return "Self-attention, then cross-attention over [t; y], then the MLP."


@_exercise("03_conditioning_and_blocks")
def _in_context_block(answer):
    _same_outputs(answer, InContextBlock, _randn(2, 6 + 2, 32))
    return "A plain ViT block: t and y ride along as two tokens."


@_exercise("03_conditioning_and_blocks")
def _extra_params(answer):
    D = 1152
    _expect(answer == 2 * D * D + 2 * D, "count the weights and biases of the two extra D-wide outputs")
    return f"× 28 blocks = {28 * answer / 1e6:.1f} M of DiT-XL/2's parameters."


# ---------------------------------------------------------------- 04 build the model

@_exercise("04_build_the_model")
def _in_context_flops(answer):
    for name, size in (("DiT-S/2", 32), ("DiT-XL/4", 32), ("DiT-Nano/2", 16)):
        cfg = get_config(name, input_size=size, block="in-context")
        got = _call(answer, cfg)
        _expect(int(got) == estimate_flops(cfg), f"wrong for {name} at {size}×{size}: every block sees T + 2 tokens, "
                                                 "the patch embedding and final layer only T; no adaLN")
    return "Two more tokens cost almost nothing: in-context's Gflops are adaLN-Zero's."


@_exercise("04_build_the_model")
def _xl2_params(answer):
    _expect(answer == count_params("DiT-XL/2"), "build your model with DiT-XL/2's sizes on the meta device and "
                                                "sum p.numel() over its parameters (the sin-cos table is not one)")
    return "Table 4 rounds it to 675 M."


@_exercise("04_build_the_model")
def _attention_overtakes_mlp(answer):
    def scores_win(side):
        f = flops_breakdown(get_config("DiT-XL/2", input_size=side))
        return f["attention scores"] > f["MLP"]
    first = next(side for side in range(2, 1024, 2) if scores_win(side))
    _expect(isinstance(answer, int) and answer % 2 == 0, "an even latent side (DiT-XL/2 has p = 2)")
    _expect(answer == first, "compare 2·T²·D with 2·T·D·4D, or loop over latent sides with your Gflops count")
    return f"T > 4D tokens: a {first * 8} px image. Below that, the MLP dominates."


# ---------------------------------------------------------------- 05 diffusion training

@_exercise("05_diffusion_training")
def _cosine_betas(answer):
    for T in (1000, 50):
        got = torch.as_tensor(np.asarray(_call(answer, T)), dtype=torch.float64)
        _expect(got.shape == (T,), f"T = {T} betas, got shape {tuple(got.shape)}")
        _expect(torch.allclose(got, torch.from_numpy(get_beta_schedule("cosine", T)), rtol=1e-6, atol=1e-9),
                f"wrong values for T = {T}: β_t = 1 − ᾱ(t+1)/ᾱ(t) with s = 0.008, clipped at 0.999")


@_exercise("05_diffusion_training")
def _snr_crossing(answer):
    def first(d):
        ac = d.alphas_cumprod
        return int(torch.nonzero(ac / (1 - ac) < 1)[0])
    expected = tuple(first(create_diffusion(noise_schedule=s)) for s in ("linear", "cosine"))
    _expect(tuple(int(a) for a in answer) == expected, "a tuple (linear, cosine): the first t with ᾱ_t < 1 − ᾱ_t")
    return f"The cosine schedule keeps the image dominant {expected[1] - expected[0]} steps longer."


@_exercise("05_diffusion_training")
def _log_variance(answer):
    diffusion = create_diffusion()
    t = torch.tensor([0, 1, 10, 500, 999])
    v = torch.rand(5, 2, 3, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    want = diffusion.p_mean_variance(None, torch.zeros_like(v), t,
                                     model_output=torch.cat([torch.zeros_like(v), v], 1))["log_variance"]
    got = _call(answer, v, t)
    _expect(torch.allclose(got.float(), want, atol=1e-5), "log Σ = f·log β_t + (1 − f)·log β̃_t with f = (v + 1)/2, "
                                                          "and β̃_0 replaced by β̃_1 before taking the log")


# ---------------------------------------------------------------- 06 sampling

def _fake_model(x, t, **kwargs):  # a deterministic stand-in for a DiT: (ε, v) from x and t
    return torch.cat([torch.tanh(x) * (t.float().view(-1, 1, 1, 1) / 1000), torch.zeros_like(x)], 1)


@_exercise("06_sampling")
def _ddim_eta_step(answer):
    sampler = create_diffusion("10")
    x = _randn(3, 2, 4, 4)
    for i, eta in ((5, 0.0), (5, 0.7), (1, 1.0)):
        t = torch.full((3,), i)
        want = sampler.ddim_sample(_fake_model, x, t, eta=eta, generator=torch.Generator().manual_seed(1))["sample"]
        eps = _fake_model(x, sampler.timestep_map[t])[:, :2]
        z = _randn(*x.shape, seed=1)
        got = _call(answer, x, eps, float(sampler.alphas_cumprod[i]), float(sampler.alphas_cumprod_prev[i]), eta, z)
        _expect(torch.allclose(got, want, atol=1e-4), f"wrong for η = {eta}: check σ and the coefficient of ε̂")
    return "η interpolates between deterministic DDIM (0) and ancestral sampling (1)."


@_exercise("06_sampling")
def _cfg_forward_images(answer):
    with torch.random.fork_rng():
        model = build_model("DiT-Pico/4", input_size=8, depth=1).eval()
    seen, forward = [], model.forward
    model.forward = lambda x, *a, **k: seen.append(len(x)) or forward(x, *a, **k)  # forward_with_cfg calls it
    sample(model, [0, 1, 2], steps=4, sampler="ddim", cfg_scale=4.0, progress=False)
    _expect(answer == sum(seen), "how many forward calls per image, and how many halves does a guided batch have?")
    return f"{len(seen)} calls of {seen[0]} images: guidance doubles the cost of sampling."


@_exercise("06_sampling")
def _settled_at(answer, rms):
    _expect(answer == next(i for i, r in enumerate(rms) if r < 0.1),
            "the first index i with rms[i] < 0.1 (rms compares each step's clamped x̂_0 with the final image)")


# ---------------------------------------------------------------- 07 flow matching

def _test_field(x, t):  # dx/dt for the Heun exercise: a field whose solver results are easy to tell apart
    return torch.cos(3 * t).view(-1, 1) * x + 1


@_exercise("07_flow_matching")
def _heun_step(answer):
    grid, x = torch.tensor([0.0, 0.5, 1.0]), torch.ones(2, 1)
    for k in range(2):
        x = _call(answer, _test_field, x, grid[k], grid[k + 1])
    want = ode_sample(create_flow(), _test_field, torch.ones(2, 1), grid, "heun")
    _expect(torch.allclose(x, want, atol=1e-6), "evaluate the velocity at the end of the Euler step too (x + dt·v at "
                                                "t_next), then step with the average of the two slopes")
    return "Two evaluations per step and an error of O(dt²) instead of Euler's O(dt)."


@_exercise("07_flow_matching")
def _gvp_target(answer):
    t, x0, x1 = torch.rand(5, generator=torch.Generator().manual_seed(0)), _randn(5, 1, 4, 4), _randn(5, 1, 4, 4, seed=1)
    got = _call(answer, t, x0, x1)
    _expect(got.shape == x0.shape, f"u_t has the images' shape {tuple(x0.shape)}, got {tuple(got.shape)}")
    _expect(torch.allclose(got, get_path("gvp").interpolate(t, x0, x1)[1], atol=1e-5),
            "differentiate α_t = sin(πt/2) and σ_t = cos(πt/2) with respect to t (chain rule: a factor π/2)")
    return "On GVP the speed |u_t| is constant too, but the path is a quarter circle."


@_exercise("07_flow_matching")
def _share_in_middle(answer):
    share = math.erf(math.log(3) / math.sqrt(2))  # P(|n| < logit(0.75)), n ~ N(0, 1)
    _expect(isinstance(answer, (int, float)) and abs(answer - share) < 0.01,
            "t = 1 − sigmoid(n) with n ~ N(0, 1): t lies in [0.25, 0.75] when |n| <= logit(0.75); the normal's CDF "
            "(or a histogram of many draws) gives the probability")
    return "Logit-normal sampling spends that share of training on the middle half of the path, uniform 0.50."


# ---------------------------------------------------------------- 08 train on a GPU

@_exercise("08_train_on_a_gpu")
def _run_cost(answer):
    for name, batch, steps in (("DiT-S/2", 256, 400_000), ("DiT-Mi/4", 64, 3000)):
        forward = estimate_flops(name) / 1e9
        step_gflops, run_pflops = _call(answer, get_config(name), batch, steps)
        _expect(_close(step_gflops, 3 * forward * batch), f"wrong Gflops per step for {name}, batch {batch}: one "
                                                           "forward pass (estimate_flops) × 3 × the batch size")
        _expect(_close(run_pflops, 3 * forward * batch * steps / 1e6), "the run's Pflops: Gflops per step × steps / 10⁶")
    eflops = 3 * estimate_flops("DiT-S/2") * 256 * 400_000 / 1e18
    return f"DiT-S/2 for 400K steps at batch 256 (the paper's recipe) is {eflops:.1f} Eflops of multiply-adds."


@_exercise("08_train_on_a_gpu")
def _resume(answer):
    _expect(tuple(answer) == (7000, 777), "checkpoints are written at multiples of 1000")
    return "Choose the checkpoint interval so that a lost interval costs little (a checkpoint takes seconds)."


@_exercise("08_train_on_a_gpu")
def _initial_share(answer):
    for decay, steps, warmup in ((0.9999, 1000, False), (0.9999, 1000, True), (0.99, 50, True), (0.9, 3, False)):
        share = 1.0
        for k in range(steps):
            share *= min(decay, (1 + k) / (10 + k)) if warmup else decay
        got = _call(answer, decay, steps, warmup)
        _expect(abs(float(got) - share) < 1e-6 * max(share, 1e-3), f"wrong for decay {decay}, {steps} steps, "
                f"warmup={warmup}: each step keeps a fraction d_k of the EMA, d_k = min(d, (1+k)/(10+k)) with warm-up")
    return "Without warm-up, 90 % of the EMA is still the random initialisation after 1000 steps."


# ---------------------------------------------------------------- 09 scaling explorer

@_exercise("09_scaling_explorer")
def _closest_patch(answer):
    for size, target in (("S", 5.4), ("S", 1.5), ("B", 100.0), ("XL", 0.3)):
        g = {p: estimate_flops(f"DiT-{size}/{p}") / 1e9 for p in (2, 4, 8)}
        want = min(g, key=lambda p: abs(math.log(g[p] / target)))
        _expect(_call(answer, size, target) == want, f"wrong for DiT-{size} and {target} Gflops: compare the "
                                                     "Gflops of p = 2, 4, 8 on a log scale")
    fid = {r["model"]: r["fid50k_400k"] for r in paper_table("adaLN-Zero", 256)}
    p = answer("S", estimate_flops("DiT-XL/8") / 1e9)
    return (f"DiT-S/{p} costs about what DiT-XL/8 does, with 20× fewer parameters: FID {fid[f'DiT-S/{p}']} vs "
            f"{fid['DiT-XL/8']} in Table 4.")


@_exercise("09_scaling_explorer")
def _corr_paper(answer):
    t4 = paper_table("adaLN-Zero", 256)
    r = np.corrcoef(np.log10([x["gflops"] for x in t4]), [x["fid50k_400k"] for x in t4])[0, 1]
    _expect(abs(float(answer) - r) < 0.01, "12 rows, x = log10(gflops), y = fid50k_400k")
    return "More Gflops, lower FID."


@_exercise("09_scaling_explorer")
def _best_in_my_run(answer, rows):
    fd = {r["model"]: r["fd"] for r in rows}
    _expect(answer in fd, f"pick one of {list(fd)}")
    _expect(answer == min(fd, key=fd.get), "lower FD is better")
    most = max(rows, key=lambda r: r["gflops"])["model"]
    return f"The most Gflops: {most}: " + ("the same model, as in the paper." if most == answer
                                           else "a different one: try more RUN_STEPS.")


# ---------------------------------------------------------------- 10 sampling playground

@_exercise("10_sampling_playground")
def _steps_enough(answer, model, label, options, tol):
    imgs = {k: sample(model, [label] * 8, steps=k, cfg_scale=4.0, seed=0, progress=False).images
            for k in (*options, 100)}
    rms = {k: float((imgs[k] - imgs[100]).pow(2).mean().sqrt()) for k in options}
    _expect(answer == next((k for k in sorted(options) if rms[k] < tol), None),
            f"sample with each step count from seed 0 and compare with 100 steps (RMS distance < {tol})")


@_exercise("10_sampling_playground")
def _panel(answer):
    fig = _call(answer, "3", 2.0)
    _expect(isinstance(fig, Figure), f"return the matplotlib Figure (explore.sample_grid makes one), got "
                                     f"{type(fig).__name__}")
    _expect(any(ax.images for ax in fig.axes), "the figure shows no images")


# ---------------------------------------------------------------- 11 pretrained DiT-XL/2

@_exercise("11_pretrained_dit_xl")
def _class_ids(answer):
    red_panda, c980 = answer
    _expect(red_panda == imagenet_class_index("red panda"), "use imagenet_class_index")
    _expect(c980 == imagenet_classes()[980], "use imagenet_classes()[980]")


@_exercise("11_pretrained_dit_xl")
def _network_evals(answer):
    for purpose, n in (("fid", 50_000), ("picture", 16)):
        s = paper_settings(purpose)
        want = n * s["steps"] * (2 if s["cfg_scale"] != 1 else 1)
        _expect(_call(answer, n, s) == want, f"wrong for paper_settings({purpose!r}): steps per image, and guidance "
                                             "doubles each step")
    _expect(_call(answer, 10, dict(steps=25, cfg_scale=1.0)) == 250, "without guidance (cfg_scale 1) one pass a step")
    g = estimate_flops("DiT-XL/2") / 1e9
    return f"FID-50K: {answer(50_000, paper_settings('fid')) * g / 1e6:.0f} Pflops of DiT-XL/2 at 256 px."
