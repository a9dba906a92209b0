"""What to sample with: the samplers of each model family, the guidance and sampler settings (checked where they are
made, with the allowed ranges), and which of them fit a model (`model.objective`, recorded in its checkpoint)."""
from dataclasses import dataclass, replace

from ..checks import integer, number, of_type, one_of
from ..diffusion.flow import FlowMatching, create_flow
from ..diffusion.interpolants import DIFFUSION_FORMS

DDPM_SAMPLERS = ("ddim", "ddpm")
FLOW_SAMPLERS = ("euler", "heun", "dopri5", "sde-euler", "sde-heun")  # ODE, then SDE (Euler–Maruyama, Heun)
SAMPLERS = DDPM_SAMPLERS + FLOW_SAMPLERS
TRAJECTORY_SAMPLERS = ("ddim", "ddpm", "euler", "heun")  # dopri5 and the SDEs record no trajectory
MAX_CFG_SCALE = 100.0  # beyond it the guided output overflows; useful scales are 1..10
MAX_TIME_SHIFT = 100.0  # SD3 uses 3; 1/100..100 keeps every step of the grid resolvable in float32


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance (paper §3.1): ε̂ = ε(x, ∅) + scale·(ε(x, y) − ε(x, ∅)); scale 1 = none.
    channels: None guides all noise channels, 3 the official DiT / SiT way. interval=(t_lo, t_hi), flow models
    only: guide while t (0 noise, 1 data) is inside, plain conditional elsewhere (Kynkäänniemi et al. 2024)."""
    scale: float = 4.0
    channels: int | None = None
    interval: tuple[float, float] | None = None

    def __post_init__(self):
        number("cfg_scale", self.scale, min=0, max=MAX_CFG_SCALE)
        self.channels is None or integer("guidance_channels", self.channels, min=1)
        if self.interval is not None:  # (t_lo, t_hi) with 0 <= t_lo <= t_hi <= 1
            integer("len(cfg_interval)", len(of_type("cfg_interval", self.interval, (tuple, list), "(t_lo, t_hi)")),
                    min=2, max=2)
            number("cfg_interval t_lo", self.interval[0], min=0, max=1)
            number("cfg_interval t_hi", self.interval[1], min=self.interval[0], max=1)


@dataclass(frozen=True)
class Sampler:
    """A sampler by name (None: the model's default, the first of `samplers_for(model)`) and its settings.
    eta: DDIM's noise, 0 deterministic .. 1 DDPM-like; time_shift: flow samplers, SD3's shift of the time grid
    (1 = none); diffusion_form: "sde-euler" / "sde-heun", SiT's diffusion coefficient w_t."""
    name: str | None = None
    eta: float = 0.0
    time_shift: float = 1.0
    diffusion_form: str = "sigma"

    def __post_init__(self):
        self.name is None or one_of("sampler", self.name, SAMPLERS, " or a diffusers scheduler")
        number("eta", self.eta, min=0, max=1)
        number("time_shift", self.time_shift, min=1 / MAX_TIME_SHIFT, max=MAX_TIME_SHIFT)
        one_of("diffusion_form", self.diffusion_form, DIFFUSION_FORMS)


def is_scheduler(sampler) -> bool:
    """A 🤗 diffusers scheduler object (duck-typed: `set_timesteps` and `step`)."""
    return hasattr(sampler, "set_timesteps") and hasattr(sampler, "step")


def objective_of(model) -> dict:
    """What a model was trained for: `model.objective` (set by `load_model` and `train`), else DDPM."""
    return getattr(model, "objective", None) or {"objective": "ddpm"}


def is_flow(model) -> bool:
    return objective_of(model).get("objective") == "flow"


def samplers_for(model) -> tuple[str, ...]:
    """The sampler names that fit a model: DDPM's or the flow ODE/SDE ones; the first is the default."""
    return FLOW_SAMPLERS if is_flow(model) else DDPM_SAMPLERS


def flow_of(model) -> FlowMatching:
    """The `FlowMatching` a flow model was trained with (path, prediction, eps intervals) from its record."""
    o = objective_of(model)
    one_of("objective", o.get("objective"), ["flow"], " (a flow-matching model)")
    return create_flow(o.get("path", "linear"), o.get("prediction", "velocity"), o.get("loss_weight"),
                       train_eps=o.get("train_eps"), sample_eps=o.get("sample_eps"))


def fit(model, sampler, guidance: Guidance, trajectory: bool):
    """The sampler (its name resolved) if it, the guidance and `trajectory` fit this model, else a ValueError
    saying what does."""
    o, fits = objective_of(model), samplers_for(model)
    name = "a diffusers scheduler" if is_scheduler(sampler) else repr(sampler.name)
    if is_scheduler(sampler) and is_flow(model) or not is_scheduler(sampler) and sampler.name not in (None, *fits):
        trained = ", ".join(f"{k} {v}" for k, v in o.items() if k in ("path", "prediction") and v)
        raise ValueError(f"sampler {name} does not fit this model: it was trained with objective "
                         f"{o['objective']!r}{f' ({trained})' if trained else ''}; use one of {list(fits)}")
    sampler = sampler if is_scheduler(sampler) else replace(sampler, name=sampler.name or fits[0])
    if not is_flow(model) and (guidance.interval is not None or getattr(sampler, "time_shift", 1) != 1):
        raise ValueError("cfg_interval and time_shift apply to flow-matching models (sampler euler, heun, ...); "
                         "this model was trained with the DDPM objective")
    if trajectory and not is_scheduler(sampler):
        one_of("sampler", sampler.name, TRAJECTORY_SAMPLERS, " with trajectory=True")
    if guidance.scale != 1 and not model.config.has_null_class:
        raise ValueError(f"cfg_scale={guidance.scale} needs a model trained with label dropout (a null class); "
                         "this one has class_dropout_prob=0: use cfg_scale=1")
    return sampler
