"""Recipes by scale: the hyper-parameters a run gets for the options it leaves unset.

The paper's recipe (§4: AdamW at lr 1e-4, no weight decay, batch 256, EMA 0.9999, 400K steps and more) is right for
the paper's models on a GPU cluster and wrong for a run of a few thousand steps on a laptop CPU: at lr 1e-4 a 2000-step
DiT-Mi/4 run on MNIST samples noise (judge accuracy 0.09, chance). So `train()` picks one of two recipes:

    quick   short runs of the small CPU-sized models (Mi, Nano, ...): flow matching (rectified flow, velocity: SiT;
            it learns this task several times faster than DDPM, data/objectives.csv), a higher lr after a short
            warm-up, a model and a patch size for the data's resolution, and a number of steps that reaches judge
            accuracy >= 0.9 on the digits / MNIST in minutes on 2 CPU cores (measured: README "Recipes")
    paper   the paper's configs (DiT-S/B/L/XL) and long runs (>= LONG_RUN steps): the paper's objective (DDPM,
            learned Σ) and hyper-parameters

`recipe="auto"` chooses from the model and the number of steps (not the device: the device sets the precision),
`recipe="quick"|"paper"` forces one, and any option given explicitly (not None) wins over the recipe. The resolved
values, where each came from, and why the recipe was chosen go to the run's config.json.
"""
import math
from dataclasses import replace

from ..model import PAPER_SIZES
from .config import FLOW_FIELDS, RECIPE_FIELDS, TrainConfig, check_flow_fields

LONG_RUN = 50_000  # steps from which a run counts as long: the paper's recipe

PAPER = dict(objective="ddpm", batch_size=256, lr=1e-4, warmup_steps=0, ema_decay=0.9999, steps=400_000)
PAPER_TOKENS = 256  # DiT-S/p with p giving ~256 tokens: the paper's XL/2 on 32x32 latents; 32 px data -> DiT-S/2

# quick: measured on this 2-core CPU (benchmarks/recipe_search.py; README "Recipes"). DiT-Mi with a patch for the
# data's largest side, and steps with a margin over those that reach judge accuracy >= 0.9: (side <= s, tokens,
# steps). At 16 px 2x2 tokens learn fastest per CPU-second (4x4 need 3x the CPU time for the same accuracy); at
# 32 px 4x4 tokens of 8x8 pixels stall (DDPM: accuracy 0.26 after 3000 steps, the patches do not join up), 8x8
# tokens work: flow matching reaches 0.97 on MNIST after 1000 steps.
QUICK_BY_SIDE = ((16, 4, 2000), (32, 64, 1500))
QUICK = dict(objective="flow", batch_size=64, lr=4e-3, warmup_steps=100, ema_decay=0.999)
MAX_PATCH = 8


def patch_for(hw: tuple[int, int], tokens: int) -> int:
    """The patch size p dividing H and W, at most MAX_PATCH and leaving at least 2x2 tokens (else 1), whose token count
    (H/p)(W/p) is nearest `tokens` (in ratio; ties -> the larger, cheaper patch)."""
    h, w = hw
    ok = [p for p in range(MAX_PATCH, 1, -1) if h % p == 0 and w % p == 0 and min(h, w) // p >= 2] + [1]
    return min(ok, key=lambda p: abs(math.log(h * w / p ** 2 / tokens)))


def choose_recipe(cfg: TrainConfig) -> tuple[str, str]:
    """(recipe name, why) for a config whose unset options are None."""
    if cfg.recipe != "auto":
        return cfg.recipe, f"recipe={cfg.recipe!r} was given"
    size = str(cfg.model).removeprefix("DiT-").partition("/")[0] if cfg.model else None
    if size in PAPER_SIZES:
        return "paper", f"{cfg.model} is one of the paper's configs (DiT-S/B/L/XL)"
    if cfg.steps is not None and cfg.steps >= LONG_RUN:
        return "paper", f"{cfg.steps} steps is a long run (>= {LONG_RUN})"
    return "quick", (f"a short run (< {LONG_RUN} steps) of a CPU-sized model: the paper's lr 1e-4 and EMA 0.9999 "
                     f"need ~100K+ steps")


def recipe_values(name: str, hw: tuple[int, int]) -> tuple[dict, dict]:
    """(values of RECIPE_FIELDS, a note per value) of recipe `name` for data of size hw = (H, W) (latents in latent
    mode)."""
    if name == "paper":
        p = patch_for(hw, PAPER_TOKENS)
        values = dict(PAPER, model=f"DiT-S/{p}")
        notes = dict(model=f"the smallest paper config, {_tokens(hw, p)}", steps="the paper's 400K")
        return values, notes
    _, tokens, steps = next((row for row in QUICK_BY_SIDE if max(hw) <= row[0]), QUICK_BY_SIDE[-1])
    p = patch_for(hw, tokens)
    return dict(QUICK, model=f"DiT-Mi/{p}", steps=steps), dict(model=_tokens(hw, p))


def _tokens(hw, p) -> str:
    return f"{hw[0] // p}x{hw[1] // p} = {hw[0] * hw[1] // p ** 2} tokens at {hw[0]}x{hw[1]}"


def resolve_recipe(cfg: TrainConfig, hw: tuple[int, int], kept: tuple = ()) -> tuple[TrainConfig, dict]:
    """Fill the unset (None) RECIPE_FIELDS of cfg -> (resolved config, info for config.json and the printout).

    hw: the model's input size (H, W); kept: the options a resumed run kept (`resume.keep_resumed`)."""
    name, why = choose_recipe(cfg)
    if "recipe" in kept:
        why = "the resumed run's recipe"
    values, notes = recipe_values(name, hw)
    flow_given = [k for k in FLOW_FIELDS if getattr(cfg, k) is not None]
    if cfg.objective is None and flow_given:  # --path etc. imply flow matching
        values, notes = dict(values, objective="flow"), dict(notes, objective=f"implied by {', '.join(flow_given)}")
    source = {k: "the resumed run" if k in kept else "given" if getattr(cfg, k) is not None
              else "recipe" + (f": {notes[k]}" if k in notes else "") for k in RECIPE_FIELDS}
    cfg = replace(cfg, recipe=name, **{k: values[k] for k in RECIPE_FIELDS if getattr(cfg, k) is None})
    check_flow_fields(cfg)
    return cfg, dict(name=name, why=why, values={k: getattr(cfg, k) for k in RECIPE_FIELDS}, source=source)


def format_recipe(info: dict, precision: str, precision_why: str) -> str:
    """The lines `train()` prints before training: the recipe, why, each value and where it came from."""
    lines = [f"recipe: {info['name']} ({info['why']})"]
    for k, v in info["values"].items():
        lines.append(f"  {k:<13} {v!s:<10} {info['source'][k]}")
    lines.append(f"precision: {precision} ({precision_why})")
    return "\n".join(lines)


