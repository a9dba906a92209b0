"""The checks of notebooks 10–12: the scaling explorer, the sampling playground, the pretrained DiT-XL/2."""
import math

import numpy as np
from matplotlib.figure import Figure

from ..data.imagenet import imagenet_class_index, imagenet_classes
from ..eval import estimate_flops, paper_table
from ..hub.pretrained import paper_settings
from ..sampling import sample
from .exercise_tools import call, exercise, expect


# ---------------------------------------------------------------- 10 scaling explorer

@exercise("10_scaling_explorer")
def _closest_patch(answer):
    for size, target in (("S", 5.4), ("S", 1.5), ("B", 100.0), ("XL", 0.3)):
        g = {p: estimate_flops(f"DiT-{size}/{p}") / 1e9 for p in (2, 4, 8)}
        want = min(g, key=lambda p: abs(math.log(g[p] / target)))
        expect(call(answer, size, target) == want, f"wrong for DiT-{size} and {target} Gflops: compare the "
                                                     "Gflops of p = 2, 4, 8 on a log scale")
    fid = {r["model"]: r["fid50k_400k"] for r in paper_table("adaLN-Zero", 256)}
    p = answer("S", estimate_flops("DiT-XL/8") / 1e9)
    return (f"DiT-S/{p} costs about what DiT-XL/8 does, with 20× fewer parameters: FID {fid[f'DiT-S/{p}']} vs "
            f"{fid['DiT-XL/8']} in Table 4.")


@exercise("10_scaling_explorer")
def _corr_paper(answer):
    t4 = paper_table("adaLN-Zero", 256)
    r = np.corrcoef(np.log10([x["gflops"] for x in t4]), [x["fid50k_400k"] for x in t4])[0, 1]
    expect(abs(float(answer) - r) < 0.01, "12 rows, x = log10(gflops), y = fid50k_400k")
    return "More Gflops, lower FID."


@exercise("10_scaling_explorer")
def _best_in_my_run(answer, rows):
    fd = {r["model"]: r["fd"] for r in rows}
    expect(answer in fd, f"pick one of {list(fd)}")
    expect(answer == min(fd, key=fd.get), "lower FD is better")
    most = max(rows, key=lambda r: r["gflops"])["model"]
    return f"The most Gflops: {most}: " + ("the same model, as in the paper." if most == answer
                                           else "a different one: try more RUN_STEPS.")


# ---------------------------------------------------------------- 12 sampling playground

@exercise("11_sampling_playground")
def _steps_enough(answer, model, label, options, tol):
    imgs = {k: sample(model, [label] * 8, steps=k, cfg_scale=4.0, seed=0, progress=False).images
            for k in (*options, 100)}
    rms = {k: float((imgs[k] - imgs[100]).pow(2).mean().sqrt()) for k in options}
    expect(answer == next((k for k in sorted(options) if rms[k] < tol), None),
            f"sample with each step count from seed 0 and compare with 100 steps (RMS distance < {tol})")


@exercise("11_sampling_playground")
def _panel(answer):
    fig = call(answer, "3", 2.0)
    expect(isinstance(fig, Figure), f"return the matplotlib Figure (explore.sample_grid makes one), got "
                                     f"{type(fig).__name__}")
    expect(any(ax.images for ax in fig.axes), "the figure shows no images")


# ---------------------------------------------------------------- 12 pretrained DiT-XL/2

@exercise("12_pretrained_dit_xl")
def _class_ids(answer):
    red_panda, c980 = answer
    expect(red_panda == imagenet_class_index("red panda"), "use imagenet_class_index")
    expect(c980 == imagenet_classes()[980], "use imagenet_classes()[980]")


@exercise("12_pretrained_dit_xl")
def _network_evals(answer):
    for purpose, n in (("fid", 50_000), ("picture", 16)):
        s = paper_settings(purpose)
        want = n * s["steps"] * (2 if s["cfg_scale"] != 1 else 1)
        expect(call(answer, n, s) == want, f"wrong for paper_settings({purpose!r}): steps per image, and guidance "
                                             "doubles each step")
    expect(call(answer, 10, dict(steps=25, cfg_scale=1.0)) == 250, "without guidance (cfg_scale 1) one pass a step")
    g = estimate_flops("DiT-XL/2") / 1e9
    return f"FID-50K: {answer(50_000, paper_settings('fid')) * g / 1e6:.0f} Pflops of DiT-XL/2 at 256 px."
