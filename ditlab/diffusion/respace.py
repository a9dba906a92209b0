"""Timestep respacing (IDDPM §4): sample with K < T steps by keeping a subset S of the T timesteps and
recomputing β from the kept ᾱ, plus `create_diffusion`, the factory DiT's training and sampling use.

    diffusion = create_diffusion("")      # training: all 1000 steps, learned Σ, L_hybrid
    sampler = create_diffusion("250")     # DDPM sampling with 250 steps (the paper's FID setting)
    sampler = create_diffusion("ddim50")  # 50 DDIM steps: call sampler.ddim_sample_loop(...)
"""
import numpy as np
import torch

from ..checks import integer, is_int
from .gaussian import MODEL_VAR_TYPES, GaussianDiffusion, get_beta_schedule


def space_timesteps(num_timesteps: int, section_counts) -> list[int]:
    """Sorted timesteps to keep out of `num_timesteps`.

    section_counts: "ddimN" -> every k-th step with k such that exactly N steps remain (k = T//N when T%N==0);
    "N" or "N1,N2,..." (or a list of ints) -> split [0, T) into equal sections (the first T % len(sections)
    one step longer) and take N_i evenly spaced steps from section i of n_i steps: the stride
    (n_i − 1)/(N_i − 1) is accumulated in floating point and each partial sum rounded, as in IDDPM / DiT.
    """
    integer("num_timesteps", num_timesteps, min=1)
    if isinstance(section_counts, str) and section_counts.strip().startswith("ddim"):
        return _ddim_steps(num_timesteps, section_counts.strip())
    counts = _counts(section_counts)
    size, extra = divmod(num_timesteps, len(counts))
    sections = [size + (1 if i < extra else 0) for i in range(len(counts))]  # section i: [start_i, start_i + n_i)
    if not all(1 <= count <= n for count, n in zip(counts, sections)):
        raise ValueError(f"timestep_respacing {section_counts!r}: each count must be an int from 1 to the length of "
                         f"its section {sections} (num_timesteps={num_timesteps})")
    steps, start = [], 0
    for count, n in zip(counts, sections):
        stride = 1.0 if count == 1 else (n - 1) / (count - 1)
        # IDDPM's rule: the float position is accumulated and each partial sum rounded (round(k·stride) differs
        # by one index for many counts, e.g. 21 of 1000)
        position = 0.0
        for _ in range(count):
            steps.append(start + round(position))
            position += stride
        start += n
    return sorted(set(steps))


def _ddim_steps(num_timesteps: int, spec: str) -> list[int]:
    """"ddimN": every k-th step, with the smallest k that leaves exactly N."""
    n = int(spec[4:]) if spec[4:].isdigit() else 0
    strides = [k for k in range(1, num_timesteps + 1) if n and len(range(0, num_timesteps, k)) == n]
    if not strides:
        raise ValueError(f"timestep_respacing {spec!r}: 'ddimN' needs an N >= 1 that some integer stride gives "
                         f"exactly of {num_timesteps} steps; pick N dividing {num_timesteps} or use plain 'N'")
    return list(range(0, num_timesteps, strides[0]))


def _counts(section_counts) -> list[int]:
    """"N", "N1,N2,...", an int or a list of ints -> the list of counts."""
    items = str(section_counts).split(",") if isinstance(section_counts, (int, str)) else list(section_counts)
    if not items or not all(is_int(c) or isinstance(c, str) and c.strip().lstrip("-").isdigit() for c in items):
        raise ValueError(f"timestep_respacing must be '', 'N', 'N1,N2,...', 'ddimN' or a list of ints, got "
                         f"{section_counts!r}")
    return [int(c) for c in items]


class SpacedDiffusion(GaussianDiffusion):
    """The diffusion restricted to `use_timesteps`: β_i = 1 − ᾱ_{s_i}/ᾱ_{s_{i-1}} so that ᾱ is unchanged on
    the kept steps. Indices are 0..K-1; the model is still called with the original timesteps s_i."""

    def __init__(self, use_timesteps, betas, **kwargs):
        base_ac = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
        keep = sorted(set(int(s) for s in use_timesteps))
        kept_ac = base_ac[keep]
        new_betas = 1.0 - kept_ac / np.append(1.0, kept_ac[:-1])
        super().__init__(new_betas, **kwargs)
        self.original_num_steps = len(base_ac)
        self.timestep_map = torch.tensor(keep, dtype=torch.long)  # respaced index -> original timestep


def create_diffusion(timestep_respacing="", noise_schedule: str = "linear", learn_sigma: bool = True,
                     sigma_small: bool = False, diffusion_steps: int = 1000, rescale_learned_sigmas: bool = False):
    """DiT's diffusion: linear schedule, T=1000, learned Σ ("learned range"), L_simple + L_vlb.

    timestep_respacing: "" (all steps, for training) or a `space_timesteps` spec such as "250" or "ddim50".
    Without learn_sigma the variance is fixed: β̃_t if sigma_small else β_t, and the loss is L_simple.
    rescale_learned_sigmas: scale L_vlb by T/1000 (IDDPM's "rescaled MSE"); off as in DiT, where it only
    matters for a respaced diffusion (T = 1000 gives a factor 1).
    """
    betas = get_beta_schedule(noise_schedule, diffusion_steps)
    var_type = MODEL_VAR_TYPES[0] if learn_sigma else ("fixed_small" if sigma_small else "fixed_large")
    kwargs = dict(model_var_type=var_type, rescale_vb=rescale_learned_sigmas)
    if timestep_respacing is None or timestep_respacing == "":
        return GaussianDiffusion(betas, **kwargs)
    return SpacedDiffusion(space_timesteps(diffusion_steps, timestep_respacing), betas, **kwargs)
