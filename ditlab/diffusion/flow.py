"""Flow matching on an interpolant path (SiT, Ma et al. 2024): what the network predicts, the training loss,
and the velocity / score that the samplers integrate.

    flow = create_flow("linear", "velocity", t_sampling="logit-normal")   # rectified flow, SD3's t sampling
    losses = flow.training_losses(model, x1, model_kwargs=dict(y=y))      # dict(loss, mse, vb), each (N,)
    v = flow.velocity(model, x, t, y=y)                                   # probability-flow ODE drift (N, C, H, W)

Conventions of `interpolants.py`: t = 0 noise, t = 1 data, x_t = α_t·x1 + σ_t·x0. The model is any callable
`model(x, t, **kwargs)` taking the continuous t ∈ [0, 1] as it is (no ×1000); a learned-Σ DiT's extra C output
channels are ignored, as SiT does. Predictions (SiT §2): "velocity" v ≈ α̇·x1 + σ̇·x0, "noise" ≈ x0, "score"
≈ −x0/σ_t. Random draws come from `generator` (or the global one), noise first, then t.
"""
import math

import torch

from ..checks import one_of, positive
from .gaussian import mean_flat
from .interpolants import Path, expand_like, get_path

PREDICTIONS = ("velocity", "noise", "score")
LOSS_WEIGHTS = (None, "velocity", "likelihood")
T_SAMPLINGS = ("uniform", "logit-normal")


def time_shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3's resolution-dependent shift (Esser et al. 2024) of sampling times: with the noise level
    σ = 1 − t, σ' = shift·σ / (1 + (shift − 1)·σ). shift > 1 spends more of the steps near the noise end."""
    positive("time_shift", shift)  # 1 = no shift, SD3 uses 3.0
    if shift == 1:
        return t
    s = 1 - t
    return 1 - shift * s / (1 + (shift - 1) * s)


class FlowMatching:
    """A path, a prediction type and SiT's loss weighting, with the time intervals SiT keeps away from the
    singular ends: train_eps / sample_eps (defaults as the official code: 0 for velocity on Linear/GVP, 1e-3
    for noise/score; VP trains up to 1 − 1e-5 and samples up to 1 − 1e-3)."""

    def __init__(self, path: str | Path = "linear", prediction: str = "velocity", loss_weight: str | None = None,
                 train_eps: float | None = None, sample_eps: float | None = None, t_sampling: str = "uniform",
                 logit_mean: float = 0.0, logit_std: float = 1.0):
        self.path = path if isinstance(path, Path) else get_path(path)
        one_of("prediction", prediction, PREDICTIONS)
        one_of("loss_weight", loss_weight, LOSS_WEIGHTS)
        one_of("t_sampling", t_sampling, T_SAMPLINGS)
        positive("logit_std", logit_std)
        self.prediction, self.loss_weight, self.t_sampling = prediction, loss_weight, t_sampling
        self.logit_mean, self.logit_std = float(logit_mean), float(logit_std)
        vp, velocity = self.path.name == "vp", prediction == "velocity"
        default = 1e-5 if vp else (0.0 if velocity else 1e-3)
        self.train_eps = default if train_eps is None else float(train_eps)
        self.sample_eps = (1e-3 if vp else default) if sample_eps is None else float(sample_eps)

    def describe(self) -> dict:
        """What a checkpoint records about its objective (enough to rebuild this object)."""
        return dict(objective="flow", path=self.path.name, prediction=self.prediction, loss_weight=self.loss_weight,
                    train_eps=self.train_eps, sample_eps=self.sample_eps, t_sampling=self.t_sampling)

    # ---- where t may go
    def interval(self, train: bool = False, sde: bool = False, diffusion_form: str = "SBDM",
                 last_step_size: float = 0.0, reverse: bool = False) -> tuple[float, float]:
        """(t0, t1) for training or sampling. Away from t = 1 when σ = 0 makes a conversion divide by zero (an SDE
        stops at 1 − last_step_size and takes one last deterministic step), away from t = 0 for noise/score models
        (α = 0) and for SBDM SDEs. reverse: (1 − t0, 1 − t1), data to noise. As SiT's `check_interval`."""
        eps = self.train_eps if train else self.sample_eps
        t0, t1 = 0.0, 1.0
        end = 1 - last_step_size if sde and last_step_size > 0 else 1 - eps
        if self.path.name == "vp":
            t1 = end
        elif self.prediction != "velocity" or sde:
            t0 = eps if (self.prediction != "velocity" or diffusion_form == "SBDM") else 0.0
            t1 = end
        return (1 - t0, 1 - t1) if reverse else (t0, t1)

    def sample_t(self, n: int, generator=None, device=None) -> torch.Tensor:
        """(n,) training times in the train interval: uniform, or logit-normal (SD3, Esser et al. 2024:
        the noise level σ = 1 − t is sigmoid(m + s·ε), which concentrates training on intermediate t)."""
        if self.t_sampling == "uniform":
            u = torch.rand((n,), generator=generator, device=device)
        else:
            u = 1 - torch.sigmoid(self.logit_mean + self.logit_std * torch.randn((n,), generator=generator,
                                                                                device=device))
        return self.scale_t(u)

    def scale_t(self, u: torch.Tensor) -> torch.Tensor:
        """u ∈ [0, 1] -> t0 + u·(t1 − t0) in the training interval."""
        t0, t1 = self.interval(train=True)
        return u * (t1 - t0) + t0

    # ---- the network's output, read as velocity or score
    def _model(self, model, x, t, kwargs):
        out = model(x, t, **kwargs)
        return out[:, : x.shape[1]]  # a learned-Σ DiT's extra channels are not used (as in SiT)

    def velocity_from_output(self, out, x, t):
        """The network's output -> the probability-flow velocity v(x, t)."""
        if self.prediction == "velocity":
            return out
        score = out if self.prediction == "score" else out / -self.path.sigma(expand_like(t, x))[0]
        return self.path.velocity_from_score(score, x, t)

    def score_from_output(self, out, x, t):
        """The network's output -> the score ∇log p_t(x)."""
        if self.prediction == "velocity":
            return self.path.score_from_velocity(out, x, t)
        return out if self.prediction == "score" else out / -self.path.sigma(expand_like(t, x))[0]

    def velocity(self, model, x, t, **model_kwargs):
        """v(x, t) from one network call; t (N,)."""
        return self.velocity_from_output(self._model(model, x, t, model_kwargs), x, t)

    def score(self, model, x, t, **model_kwargs):
        """∇log p_t(x) from one network call; t (N,)."""
        return self.score_from_output(self._model(model, x, t, model_kwargs), x, t)

    # ---- training (SiT §2: L_v for velocity, the score/noise losses with their weightings)
    def training_losses(self, model, x1, t=None, model_kwargs=None, noise=None, generator=None) -> dict:
        """Per-sample losses dict(loss, mse, vb), each (N,), for data x1 (N, C, H, W); mse is the unweighted error
        and vb is 0 (the keys of `GaussianDiffusion.training_losses`, so one training loop serves both).
        noise x0 and t (N,) are drawn when not given: noise first, then t."""
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype) if noise is None else noise
        t = self.sample_t(x1.shape[0], generator, x1.device) if t is None else t
        t = t.to(x1)
        x_t, u_t = self.path.interpolate(t, x0, x1)
        out = self._model(model, x_t, t, model_kwargs or {})  # (N, C, H, W)
        if self.prediction == "velocity":  # ‖v_θ − u_t‖², loss weighting does not apply
            mse = mean_flat((out - u_t) ** 2)
            return dict(loss=mse, mse=mse, vb=torch.zeros_like(mse), pred=out)
        _, lam = self.path.drift(x_t, t)
        sigma = self.path.sigma(expand_like(t, x_t))[0]
        weight = {None: 1.0, "velocity": (lam / sigma) ** 2, "likelihood": lam / sigma**2}[self.loss_weight]
        err = (out - x0) if self.prediction == "noise" else (out * sigma + x0)  # score: ‖σ·s_θ + x0‖²
        mse = mean_flat(err**2)
        return dict(loss=mean_flat(weight * err**2), mse=mse, vb=torch.zeros_like(mse), pred=out)


def create_flow(path: str = "linear", prediction: str = "velocity", loss_weight: str | None = None,
                t_sampling: str = "uniform", **kwargs) -> FlowMatching:
    """`create_flow()` is rectified flow with velocity prediction (SiT's best setting); see `FlowMatching`."""
    return FlowMatching(path, prediction, loss_weight, t_sampling=t_sampling, **kwargs)


def prior_logp(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per sample in nats, (N, ...) -> (N,)."""
    d = z[0].numel()
    return -d / 2 * math.log(2 * math.pi) - z.flatten(1).pow(2).sum(1) / 2
