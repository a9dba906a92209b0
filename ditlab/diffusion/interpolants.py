"""Interpolant paths between noise and data (SiT, Ma et al. 2024, §2; Albergo et al. 2023).

SiT's convention, kept throughout ditlab's flow code: **t = 0 is noise, t = 1 is data**,

    x_t = α_t·x1 + σ_t·x0,   x1 = data, x0 ~ N(0, I),   target velocity u_t = α̇_t·x1 + σ̇_t·x0.

(SD3 and Flux run time the other way, t = 1 noise.) A path is the pair (α_t, σ_t):

    Linear  α = t,          σ = 1 − t           rectified flow: straight lines from noise to data
    GVP     α = sin(πt/2),  σ = cos(πt/2)       generalised variance preserving: α² + σ² = 1
    VP      α = e^{m(t)},   σ = √(1 − α²)       DDPM's variance-preserving SDE in continuous time
            m(t) = −¼(1−t)²(β_max − β_min) − ½(1−t)β_min, β_min = 0.1, β_max = 20

Everything a sampler needs follows from (α, σ) and their derivatives: the velocity of the probability-flow ODE
in terms of the score s = ∇log p_t,  v = (α̇/α)·x + λ_t·s  with  λ_t = (α̇/α)σ² − σσ̇  (SiT §2), and back.
`t` is (N,) (one time per sample) or any shape for the plain coefficients; tensors x are (N, C, H, W).
"""
import math

import torch

from ..checks import one_of

DIFFUSION_FORMS = ("constant", "SBDM", "sigma", "linear", "decreasing", "increasing-decreasing")


def expand_like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) times -> (N, 1, 1, 1) to broadcast against x (N, C, H, W)."""
    return t.view(-1, *([1] * (x.ndim - 1)))


class Path:
    """An interpolant x_t = α_t·x1 + σ_t·x0; subclasses give (α, α̇) and (σ, σ̇)."""

    name = ""

    def alpha(self, t):  # -> (α_t, α̇_t)
        raise NotImplementedError

    def sigma(self, t):  # -> (σ_t, σ̇_t)
        raise NotImplementedError

    def d_log_alpha(self, t):
        """α̇/α, written per path so that it stays finite where α is tiny."""
        a, da = self.alpha(t)
        return da / a

    # ---- the interpolant and its velocity (the flow-matching target)
    def interpolate(self, t, x0, x1):
        """(x_t, u_t): the point on the path and its velocity d/dt x_t, for t (N,), x0 noise, x1 data."""
        a, da = self.alpha(expand_like(t, x1))
        s, ds = self.sigma(expand_like(t, x1))
        return a * x1 + s * x0, da * x1 + ds * x0  # (N, C, H, W) each

    # ---- the probability-flow ODE in terms of the score
    def drift(self, x, t):
        """v = a_t·x + λ_t·s: returns (a_t·x, λ_t), the score-free part of the velocity and the score's coefficient
        λ_t = (α̇/α)σ² − σσ̇ (SiT §2). (The official code returns −a_t·x as its "drift mean".)"""
        t = expand_like(t, x)
        ratio = self.d_log_alpha(t)
        s, ds = self.sigma(t)
        return ratio * x, ratio * s**2 - s * ds

    def diffusion(self, x, t, form: str = "SBDM", norm: float = 1.0) -> torch.Tensor:
        """The SDE's diffusion coefficient w_t (SiT §2, its choices), shaped (N, 1, 1, 1):
        constant: norm; SBDM: norm·λ_t (score-based diffusion's own choice); sigma: norm·σ_t; linear: norm·(1−t);
        decreasing: ¼(norm·cos πt + 1)²; increasing-decreasing: norm·sin²(πt)."""
        one_of("diffusion_form", form, DIFFUSION_FORMS)
        te = expand_like(t, x)
        if form == "constant":
            return torch.full_like(te, float(norm))
        if form == "SBDM":
            return norm * self.drift(x, t)[1]
        if form == "sigma":
            return norm * self.sigma(te)[0]
        if form == "linear":
            return norm * (1 - te)
        if form == "decreasing":
            return 0.25 * (norm * torch.cos(math.pi * te) + 1) ** 2
        return norm * torch.sin(math.pi * te) ** 2

    # ---- converting one prediction into another (all at the same x_t, t)
    def velocity_from_score(self, score, x, t):
        """v = a_t·x + λ_t·s."""
        ax, lam = self.drift(x, t)
        return ax + lam * score

    def score_from_velocity(self, velocity, x, t):
        """s = (v − a_t·x)/λ_t, computed as ((α/α̇)·v − x) / (σ² − (α/α̇)·σσ̇), finite where α → 0."""
        te = expand_like(t, x)
        a, da = self.alpha(te)
        s, ds = self.sigma(te)
        r = a / da
        return (r * velocity - x) / (s**2 - r * ds * s)

    def noise_from_velocity(self, velocity, x, t):
        """x̂0 = E[x0 | x_t] = −σ·s = ((α/α̇)·v − x) / ((α/α̇)·σ̇ − σ)."""
        te = expand_like(t, x)
        a, da = self.alpha(te)
        s, ds = self.sigma(te)
        r = a / da
        return (r * velocity - x) / (r * ds - s)

    def data_from_velocity(self, velocity, x, t):
        """x̂1 = E[x1 | x_t]: solve x = α·x1 + σ·x0, v = α̇·x1 + σ̇·x0 for x1 (Linear: x + (1 − t)·v)."""
        te = expand_like(t, x)
        a, da = self.alpha(te)
        s, ds = self.sigma(te)
        return (ds * x - s * velocity) / (ds * a - s * da)


class Linear(Path):
    """α = t, σ = 1 − t: the rectified-flow / flow-matching path; u_t = x1 − x0."""

    name = "linear"

    def alpha(self, t):
        return t, torch.ones_like(t)

    def sigma(self, t):
        return 1 - t, -torch.ones_like(t)

    def d_log_alpha(self, t):
        return 1 / t


class GVP(Path):
    """α = sin(πt/2), σ = cos(πt/2): a quarter circle, α² + σ² = 1 at every t."""

    name = "gvp"

    def alpha(self, t):
        return torch.sin(t * math.pi / 2), math.pi / 2 * torch.cos(t * math.pi / 2)

    def sigma(self, t):
        return torch.cos(t * math.pi / 2), -math.pi / 2 * torch.sin(t * math.pi / 2)

    def d_log_alpha(self, t):
        return math.pi / (2 * torch.tan(t * math.pi / 2))


class VP(Path):
    """DDPM's variance-preserving SDE with linear β(t) from β_min to β_max, run so that t = 1 is data."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min, self.beta_max = beta_min, beta_max

    def _log_mean(self, t):  # m(t) = log α_t and its derivative (= α̇/α = β(t)/2)
        d = self.beta_max - self.beta_min
        return -0.25 * (1 - t) ** 2 * d - 0.5 * (1 - t) * self.beta_min, 0.5 * (1 - t) * d + 0.5 * self.beta_min

    def alpha(self, t):
        m, dm = self._log_mean(t)
        a = torch.exp(m)
        return a, a * dm

    def sigma(self, t):
        m, dm = self._log_mean(t)
        s = torch.sqrt(1 - torch.exp(2 * m))
        return s, torch.exp(2 * m) * (2 * dm) / (-2 * s)  # σ̇ = −α²·ṁ/σ

    def d_log_alpha(self, t):
        return self._log_mean(t)[1]

    def drift(self, x, t):
        """For VP, a_t = λ_t = β(t)/2: v = ½β(t)·(x + s), the probability-flow ODE of the VP SDE."""
        beta = self.beta_min + (1 - expand_like(t, x)) * (self.beta_max - self.beta_min)
        return 0.5 * beta * x, beta / 2


PATHS = {"linear": Linear, "gvp": GVP, "vp": VP}


def get_path(name: str) -> Path:
    """"linear", "gvp" or "vp" (case-insensitive: SiT's "Linear", "GVP", "VP" work too)."""
    key = str(name).lower()
    return PATHS[one_of("path", key, PATHS)]()
