"""Timestep respacing (IDDPM §4): sample with K < T steps by keeping a subset S of the T timesteps and
recomputing β from the kept ᾱ, plus `create_diffusion`, the factory DiT's training and sampling use.

    diffusion = create_diffusion("")      # training: all 1000 steps, learned Σ, L_hybrid
    sampler = create_diffusion("250")     # DDPM sampling with 250 steps (the paper's FID setting)
    sampler = create_diffusion("ddim50")  # 50 DDIM steps: call sampler.ddim_sample_loop(...)
"""
import numpy as np
import torch

from .gaussian import MODEL_VAR_TYPES, GaussianDiffusion, get_beta_schedule


def space_timesteps(num_timesteps: int, section_counts) -> list[int]:
    """Sorted timesteps to keep out of `num_timesteps`.

    section_counts: "ddimN" -> every k-th step with k such that exactly N steps remain (k = T//N when T%N==0);
    "N" or "N1,N2,..." (or a list of ints) -> split [0, T) into equal sections (the first T % len(sections)
    one step longer) and take N_i evenly spaced steps from section i of n_i steps: the stride
    (n_i − 1)/(N_i − 1) is accumulated in floating point and each partial sum rounded, as in IDDPM / DiT.
    """
    if not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be a positive int, got {num_timesteps!r}")
    if isinstance(section_counts, int):
        section_counts = str(section_counts)
    if isinstance(section_counts, str):
        spec = section_counts.strip()
        if spec.startswith("ddim"):
            n = spec[len("ddim"):]
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"timestep_respacing 'ddimN' needs a positive integer N, got {section_counts!r}")
            for stride in range(1, num_timesteps + 1):
                if len(range(0, num_timesteps, stride)) == int(n):
                    return list(range(0, num_timesteps, stride))
            raise ValueError(f"timestep_respacing {section_counts!r}: no integer stride gives exactly {n} of "
                             f"{num_timesteps} steps; pick N dividing {num_timesteps} or use plain 'N'")
        try:
            counts = [int(c) for c in spec.split(",")]
        except ValueError:
            raise ValueError(f"timestep_respacing must be '' , 'N', 'N1,N2,...' or 'ddimN' with integers N, "
                             f"got {section_counts!r}") from None
    else:
        counts = list(section_counts)
        if not all(isinstance(c, (int, np.integer)) for c in counts):
            raise ValueError(f"section_counts must be a string or a list of ints, got {section_counts!r}")
    if not counts or min(counts) < 1:
        raise ValueError(f"timestep_respacing counts must be positive integers, got {section_counts!r}")
    size, extra = divmod(num_timesteps, len(counts))
    steps, start = [], 0
    for i, count in enumerate(counts):
        n = size + (1 if i < extra else 0)  # this section covers [start, start + n)
        if count > n:
            raise ValueError(f"timestep_respacing {section_counts!r}: cannot take {count} steps from a section "
                             f"of {n} (num_timesteps={num_timesteps}, {len(counts)} sections)")
        stride = 1.0 if count == 1 else (n - 1) / (count - 1)
        # IDDPM's rule: the float position is accumulated and each partial sum rounded (round(k·stride) differs
        # by one index for many counts, e.g. 21 of 1000)
        position = 0.0
        for _ in range(count):
            steps.append(start + round(position))
            position += stride
        start += n
    return sorted(set(steps))


class SpacedDiffusion(GaussianDiffusion):
    """The diffusion restricted to `use_timesteps`: β_i = 1 − ᾱ_{s_i}/ᾱ_{s_{i-1}} so that ᾱ is unchanged on
    the kept steps. Indices are 0..K-1; the model is still called with the original timesteps s_i."""

    def __init__(self, use_timesteps, betas, **kwargs):
        base_ac = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
        keep = sorted(set(int(s) for s in use_timesteps))
        if not keep or keep[0] < 0 or keep[-1] >= len(base_ac):
            raise ValueError(f"use_timesteps must be a non-empty subset of [0, {len(base_ac)})")
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
