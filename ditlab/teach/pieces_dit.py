"""The check of the piece of notebook 04: the whole DiT, `MyDiT` (the framework and the conventions: pieces.py).

The student's class is built with the official tiny config, gets the official release's weights (strictly) and must
reproduce the official code's forward; then, built with a second config (another patch size, depth, width, MLP ratio,
no learned Σ), it must match ditlab's DiT with the same random weights. A mismatch is explained by the state dict's
names and shapes, the pos_embed buffer, or the mistaken forward it equals (a missing term of c, no positions, the
blocks' outputs dropped, unpatchify's order), never by the expected numbers."""
import json

import torch
from einops import rearrange
from safetensors.torch import load_file
from torch import nn

from ..io import fixture_path
from ..model import DiT, DiTConfig
from .exercise_tools import Wrong, randn
from .piece_tools import expect_close, official_ran, piece

# The second config: patch 4 on 16×16×3, 3 blocks of width 48 with MLP ratio 2, 7 classes, and learn_sigma=False
# (C_out = C), so that no constant of the official tiny config (p = 2, 2C, mlp_ratio 4, ...) can hide in the code.
OTHER = dict(input_size=16, patch_size=4, in_channels=3, hidden_size=48, depth=3, num_heads=3, mlp_ratio=2.0,
             class_dropout_prob=0.1, num_classes=7, learn_sigma=False)
TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4, mlp_ratio=4.0,
            class_dropout_prob=0.1, num_classes=10, learn_sigma=True)  # official_dit/config.json, if it is absent

# Mistaken forwards (on ditlab's modules, same weights) a student may write, and what the check says about each.
FORWARD_MISTAKES = {
    "t": "your conditioning c misses the class label: c is the sum of the timestep and the label embeddings",
    "y": "your conditioning c misses the timestep: c is the sum of the timestep and the label embeddings",
    "no_pos": "the tokens get no positions: add pos_embed to the patch embeddings before the first block",
    "no_blocks": "the output does not depend on the blocks: keep each block's output (h = block(h, c))",
}
UNPATCHIFY_MISTAKES = {  # the final layer's tokens (N, T, p·p·C_out) read back in another order
    "n (w h) (p q c) -> n c (h p) (w q)": "your output is transposed patch by patch: unpatchify reads the tokens "
                                          "row by row (the patch row varies slowest)",
    "n (h w) (q p c) -> n c (h p) (w q)": "inside each patch the rows and columns are swapped: a token holds its "
                                          "pixels row by row, as patchify wrote them",
    "n (h w) (c p q) -> n c (h p) (w q)": "each token's numbers are read channel-first: a token holds its pixels "
                                          "one by one, each pixel's C_out channels together",
}

SHAPE_HINTS = {  # a part of a state-dict name -> what its shape depends on
    "final_layer.linear": ": the final layer maps each token to p·p·C_out numbers, C_out = 2C (ε and Σ) when "
                          "learn_sigma, else C",
    "pos_embed": ": pos_embed is (1, T, D), one row per token of the (I/p)×(I/p) grid",
    ".mlp.fc": ": a block's MLP is mlp_ratio · hidden_size wide",
    "embedding_table": ": the label table has a row per class and one more, the null class",
}


class DiTFromKwargs(DiT):
    """ditlab's DiT built from MyDiT's keyword arguments: the notebook's fallback, with the official state-dict
    names (`x_embedder.proj.weight`, `pos_embed`, `blocks.0.attn.qkv.weight`, ...) and forward(x, t, y)."""

    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True):
        super().__init__(DiTConfig(input_size=input_size, patch_size=patch_size, in_channels=in_channels,
                                   hidden_size=hidden_size, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                   class_dropout_prob=class_dropout_prob, num_classes=num_classes,
                                   learn_sigma=learn_sigma))


def _require(ok: bool, hint: str) -> None:
    if not ok:
        raise Wrong(hint)


def _official():
    """(config, release state dict, reference outputs) of the official code's tiny DiT, or None without fixtures."""
    try:
        config = json.loads(fixture_path("official_dit/config.json").read_text())
        state = torch.load(fixture_path("official_dit/DiT-tiny-release.pt"), map_location="cpu", weights_only=True)
        return config, state, load_file(fixture_path("official_dit/reference.safetensors"))
    except FileNotFoundError:
        return None


def _few(names) -> str:
    names = sorted(names)
    return ", ".join(names[:3]) + (f" (and {len(names) - 3} more)" if len(names) > 3 else "")


def check_state(model: nn.Module, want: dict, what: str) -> None:
    """Raise Wrong saying how `model`'s state dict differs from `want` (names, shapes, the pos_embed buffer)."""
    _require(isinstance(model, nn.Module), f"MyDiT(...) must give an nn.Module ({what}), got {type(model).__name__}")
    _require("pos_embed" not in dict(model.named_parameters()),
             "pos_embed is a trainable parameter: DiT's sin-cos table is fixed, register it as a buffer "
             "(self.register_buffer) so the state dict holds it but the optimiser and the parameter count do not")
    have = model.state_dict()
    _require("pos_embed" in have or "pos_embed" not in want,
             "the release stores pos_embed, your state dict does not: register the sin-cos table as a persistent "
             "buffer named pos_embed (self.register_buffer), not as a plain attribute or a table built in forward")
    missing, unexpected = set(want) - set(have), set(have) - set(want)
    _require(not missing and not unexpected,
             f"{what}, your state dict's names differ from the official release's: "
             f"missing {_few(missing) or 'none'}; unexpected {_few(unexpected) or 'none'}. Name the modules as the "
             "official code does (x_embedder, t_embedder, y_embedder, pos_embed, blocks, final_layer)")
    for name, w in want.items():
        shape, shape_want = tuple(have[name].shape), tuple(w.shape)
        why = next((hint for part, hint in SHAPE_HINTS.items() if part in name), "")
        _require(shape == shape_want, f"{what}, {name} has shape {shape}, expected {shape_want}" + why)
    pos = have.get("pos_embed")
    if pos is not None:
        _require(pos.dtype == torch.float32, f"pos_embed is {str(pos.dtype).removeprefix('torch.')} (numpy's "
                                             "default is float64): make it float32 like the weights")
        _require(torch.allclose(pos.double(), want["pos_embed"].double(), atol=1e-5),
                 "pos_embed has the right shape but not the 2D sin-cos table's values: fill it with my_sincos_2d "
                 "for hidden_size and the token grid, one row per token")


def _forward(ref: DiT, x, t, y, mistake: str | None = None) -> torch.Tensor:
    """ditlab's forward up to the final layer's tokens (N, T, p·p·C_out), optionally with one FORWARD_MISTAKES."""
    h = ref.x_embedder(x) + (0 if mistake == "no_pos" else ref.pos_embed)  # (N, T, D)
    t_emb, y_emb = ref.t_embedder(t), ref.y_embedder(y)  # (N, D) each
    c = {"t": t_emb, "y": y_emb}.get(mistake, t_emb + y_emb)  # (N, D)
    for block in [] if mistake == "no_blocks" else ref.blocks:
        h = block(h, c)
    return ref.final_layer(h, c)


def check_forward(got, ref: DiT, x, t, y, want: torch.Tensor, where: str) -> None:
    """Raise Wrong saying how `got` differs from `want` (= ref's forward or the official one): the output's shape,
    a transposed output, or the mistaken forward it equals."""
    cfg, what = ref.config, f"{where}, the output"
    N, C, T, p = x.shape[0], cfg.in_channels, cfg.num_tokens, cfg.patch_size
    if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(want.shape):
        _require(tuple(got.shape) != (N, T, p * p * cfg.out_channels),
                 f"{where}, your forward returns tokens (N, T, p·p·C_out): unpatchify them back to an image "
                 "(N, C_out, I, I)")
        _require(got.ndim != 4 or tuple(got.shape[2:]) != tuple(want.shape[2:]) or got.shape[1] not in (C, 2 * C),
                 f"{what} has {got.shape[1]} channels, expected {want.shape[1]}: C_out = 2C (ε and Σ) when "
                 f"learn_sigma, else C (here learn_sigma={cfg.learn_sigma})")
    close = dict(atol=1e-4, rtol=1e-4)
    if isinstance(got, torch.Tensor) and got.shape == want.shape and not torch.allclose(got, want, atol=1e-5):
        got = got.detach().to(want.dtype)
        _require(not torch.allclose(got, want.transpose(-1, -2), **close),
                 f"{what} is the expected output transposed (rows and columns swapped): check the order of h and w "
                 "in your unpatchify")
        with torch.no_grad():
            tokens = _forward(ref, x, t, y)
            for pattern, hint in UNPATCHIFY_MISTAKES.items():
                wrong = rearrange(tokens, pattern, h=cfg.grid[0], w=cfg.grid[1], p=p, q=p)
                _require(not torch.allclose(got, wrong, **close), f"{where}, {hint}")
            for mistake, hint in FORWARD_MISTAKES.items():
                wrong = rearrange(_forward(ref, x, t, y, mistake), "n (h w) (p q c) -> n c (h p) (w q)",
                                  h=cfg.grid[0], w=cfg.grid[1], p=p, q=p)
                _require(not torch.allclose(got, wrong, **close), f"{where}, {hint}")
    expect_close(got, want, what, atol=1e-5)


def _run(mine, config: dict, state: dict, ref: DiT, x, t, y, want, what: str) -> None:
    model = mine(**config)
    check_state(model, state, what)
    model.load_state_dict(state)  # strict: every name and shape was checked above
    with torch.no_grad():
        got = model.eval()(x, t, y)
    check_forward(got, ref, x, t, y, want, what)


def random_dit(config: dict, seed: int = 0) -> DiT:
    """ditlab's DiT of `config` with every weight drawn from N(0, 0.1²), so no zero-init hides a mistake."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ref = DiT(DiTConfig(**config)).eval()
        with torch.no_grad():
            for w in ref.parameters():
                w.normal_(std=0.1)
    return ref


@piece("04_build_the_model", fallback=lambda: DiTFromKwargs,
       fallback_name="ditlab's DiT (ditlab.model.DiT, built from MyDiT's arguments)")
def _dit(mine):
    _require(not isinstance(mine, nn.Module), "pass the class MyDiT itself, not a model built from it")
    found = _official()
    if found is not None:  # the official code's tiny DiT: its release weights, its forward
        config, state, reference = found
        ref = DiT(DiTConfig(**config)).eval()
        ref.load_state_dict(state)
        x, t, y, want = reference["x"], reference["t"], reference["y"], reference["out"]
    else:  # no fixtures (a broken install): the same config against ditlab's DiT
        config, ref = TINY, random_dit(TINY)
        state, x, t, y = ref.state_dict(), randn(4, 4, 8, 8), torch.tensor([1, 250, 500, 999]), torch.arange(4)
        with torch.no_grad():
            want = ref(x, t, y)
    _run(mine, config, state, ref, x, t, y, want, "with the official tiny config")
    official_ran("dit", found is not None)
    ref = random_dit(OTHER)  # a second config, against ditlab's DiT
    x = randn(3, OTHER["in_channels"], OTHER["input_size"], OTHER["input_size"], seed=1)
    t, y = torch.tensor([0, 421, 999]), torch.tensor([0, 3, OTHER["num_classes"]])  # the last: the null class
    with torch.no_grad():
        want = ref(x, t, y)
    _run(mine, OTHER, ref.state_dict(), ref, x, t, y, want, "with the second config")
    first = ("The official release's weights load into your model strictly and it reproduces the official code's "
             "output" if found is not None else "On the tiny config it matches ditlab's DiT (the official fixtures "
             "are not installed, so that comparison did not run)")
    return first + "; on a second config (patch 4, 3 blocks, MLP ratio 2, learn_sigma=False) it matches ditlab's DiT."
