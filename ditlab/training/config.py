"""`TrainConfig`: every option of a training run (the `ditlab train` flags are generated from its fields), checked
when it is made — types from the field annotations, ranges and the model below — so that bad options fail before
any data is loaded; the model config sized to the data; and the training objective (DDPM as in the paper, or
flow matching as in SiT)."""
import numbers
import os
import typing
from dataclasses import dataclass, field, fields

from ..checks import finite, integer, number, one_of, positive
from ..data import resolve_vae
from ..diffusion import GaussianDiffusion, create_diffusion
from ..diffusion.flow import LOSS_WEIGHTS, PREDICTIONS, T_SAMPLINGS, FlowMatching, create_flow
from ..diffusion.interpolants import PATHS
from ..model import DiTConfig, get_config

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OBJECTIVES = ("ddpm", "flow")
LR_SCHEDULES = ("constant", "cosine")
FLOW_FIELDS = {"path": tuple(PATHS), "prediction": PREDICTIONS, "loss_weight": LOSS_WEIGHTS[1:],
               "t_sampling": T_SAMPLINGS}
DIFFUSION_STEPS = 1000  # T of DiT's diffusion (create_diffusion's default), the most steps a sampler can take
RECIPE_NAMES = ("auto", "quick", "paper")
RECIPE_FIELDS = ("model", "objective", "steps", "batch_size", "lr", "warmup_steps", "ema_decay")  # None: the recipe's
# (option, check, bounds) for the numbers; None (unset) is not checked
RANGES = [*((k, integer, dict(min=1)) for k in ("steps", "batch_size", "log_every", "ckpt_every", "image_size", "limit")),
          ("sample_steps", integer, dict(min=1, max=DIFFUSION_STEPS)), ("sample_every", integer, dict(min=0)),
          ("warmup_steps", integer, dict(min=0)), ("lr", positive, {}), ("weight_decay", number, dict(min=0)),
          ("ema_decay", number, dict(min=0, max=1)), ("grad_clip", positive, {}), ("sample_cfg", finite, {})]


@dataclass
class TrainConfig:
    recipe: str = "auto"  # auto | quick | paper: the hyper-parameters left unset below (None); see recipes.py
    model: str | None = None  # a config name (ditlab.config_names()), sized to the data; None: the recipe's
    model_args: dict = field(default_factory=dict)  # DiTConfig overrides, e.g. {"depth": 4}
    data: str = "digits"  # built-in name, Hugging Face name, or a local .npz / .zip / folder
    image_size: int | None = None  # resize the data (default: the data's own size)
    channels: int | None = None  # 1 or 3 to convert the data (default: its own)
    limit: int | None = None  # use only this many training images
    vae: str | None = None  # latent mode (§3.1): a shipped VAE (digits-vae), a `ditlab vae` run or a diffusers VAE
    #                         (folder, or a Hub id: stabilityai/sd-vae-ft-ema); latents are encoded once and cached
    out_dir: str = "runs/train"
    steps: int | None = None  # None: the recipe's
    batch_size: int | None = None  # global batch, split across DDP ranks; None: the recipe's
    lr: float | None = None  # AdamW learning rate; None: the recipe's
    warmup_steps: int | None = None  # linear lr warm-up from 0 over this many steps; None: the recipe's
    lr_schedule: str = "constant"  # after the warm-up: "constant" (the paper) or "cosine" (decays to 0 at `steps`)
    weight_decay: float = 0.0
    ema_decay: float | None = None  # None: the recipe's
    ema_warmup: bool = True  # decay = min(ema_decay, (1 + step) / (10 + step)): EMA useful in short runs
    class_dropout_prob: float = 0.1
    learn_sigma: bool = True  # objective "ddpm" only: flow models predict C channels
    objective: str | None = None  # "ddpm": ε-prediction + learned Σ (the paper); "flow": flow matching (SiT), below;
    #                               None: the recipe's (quick: flow, paper: ddpm)
    path: str | None = None  # flow: "linear" (rectified flow, default), "gvp" or "vp"
    prediction: str | None = None  # flow: "velocity" (default), "noise" or "score"
    loss_weight: str | None = None  # flow with noise/score prediction: "velocity" or "likelihood" (SiT); default none
    t_sampling: str | None = None  # flow: "uniform" (default) or "logit-normal" (SD3)
    grad_clip: float | None = None
    grad_checkpointing: bool = False
    precision: str = "auto"  # auto: bf16 on GPUs that have it (fp16 + grad scaler on older ones); on CPUs bf16
    #                          where the CPU has native bf16 and the model is large enough to gain (hardware.py)
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    log_every: int = 25
    ckpt_every: int = 500
    sample_every: int = 500  # 0: never; an EMA sample grid PNG under samples/
    sample_steps: int = 25
    sample_cfg: float = 4.0
    verdict: bool = True  # end by judging a guided sample grid (data with a judge: digits, MNIST, CIFAR-10)
    resume: bool = False  # continue the run in out_dir from its checkpoint (what may change: resume.py)
    overwrite: bool = False  # a new run into a folder holding a run deletes that run first (else: refused)
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.out_dir, os.PathLike):
            self.out_dir = os.fspath(self.out_dir)
        for f in fields(self):  # the types of the annotations, then the ranges
            setattr(self, f.name, _checked_type(f.name, getattr(self, f.name), f.type))
        for name, check, bounds in RANGES:
            if getattr(self, name) is not None:
                setattr(self, name, check(name, getattr(self, name), **bounds))
        if self.ema_decay == 1:
            raise ValueError("ema_decay must be in [0, 1) (1 would never move the EMA from the initial weights), got 1.0")
        for name, allowed in (("recipe", RECIPE_NAMES), ("precision", PRECISIONS), ("objective", (None, *OBJECTIVES)),
                              ("lr_schedule", LR_SCHEDULES),
                              ("channels", (None, 1, 3)), *((k, (None, *v)) for k, v in FLOW_FIELDS.items())):
            one_of(name, getattr(self, name), allowed)
        if self.objective is not None:  # None: checked again once the recipe has chosen the objective
            check_flow_fields(self)
        if self.vae is not None:  # an unknown name or a folder that is no VAE fails here, before any data
            resolve_vae(self.vae)
        if self.resume and self.overwrite:
            raise ValueError("resume=True continues the run in out_dir and overwrite=True deletes it: choose one")
        # the model name, model_args keys and values, label dropout and image_size vs patch size, before any data
        # (model=None: the recipe picks a patch that fits the data; model_args are checked on DiT-Mi/1)
        model = self.model or "DiT-Mi/1"
        try:
            patch = get_config(model, **self.model_args).patch_size
            get_config(model, **{"input_size": self.image_size or patch, **self.model_args,
                                 "class_dropout_prob": self.class_dropout_prob, "learn_sigma": self.learn_sigma})
        except ValueError as e:
            raise ValueError(f"model={self.model!r}, model_args={self.model_args}"
                             + (f", image_size={self.image_size}" if self.image_size else "") + f": {e}") from None

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        for name in d:
            one_of("TrainConfig field", name, sorted(known))
        return cls(**d)


def check_flow_fields(cfg: TrainConfig) -> None:
    """The flow options (path, prediction, loss_weight, t_sampling) apply to objective "flow" only."""
    for name in FLOW_FIELDS:
        value = getattr(cfg, name)
        if value is not None and cfg.objective != "flow":
            raise ValueError(f"{name}={value!r} applies to objective='flow' only (objective={cfg.objective!r})")


def _checked_type(name: str, value, annotation):
    """`value` if it has the field's annotated type (a class, or a union such as `int | None`), else a TypeError
    naming the option; ints and floats (numpy's too) come back as Python numbers, booleans are not numbers."""
    allowed = typing.get_args(annotation) or (annotation,)
    for t in allowed:
        if t is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if t is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if t not in (int, float) and isinstance(t, type) and isinstance(value, t):
            return value
    names = " or ".join(_TYPE_NAMES.get(t, getattr(t, "__name__", str(t))) for t in allowed)
    raise TypeError(f"{name} must be {names}, got {type(value).__name__} {value!r}")


_TYPE_NAMES = {int: "an int", float: "a number", bool: "True or False", str: "a string", dict: "a dict",
               type(None): "None"}


def build_model_config(cfg: TrainConfig, data) -> DiTConfig:
    """The model config sized to the data; explicit conflicting overrides are an error. Needs the model and the
    objective: given, or filled in by the recipe (`resolve_recipe`)."""
    if cfg.model is None or cfg.objective is None:
        raise ValueError("build_model_config needs model and objective: pass them, or fill them in with "
                         "ditlab.training.resolve_recipe(cfg, (H, W)) first")
    size = data.image_size
    sized = dict(input_size=size if isinstance(size, int) else tuple(size), in_channels=data.channels,
                 num_classes=data.num_classes, class_dropout_prob=cfg.class_dropout_prob,
                 learn_sigma=cfg.learn_sigma and cfg.objective == "ddpm")
    for k in ("input_size", "in_channels", "num_classes"):
        if k in cfg.model_args and cfg.model_args[k] != sized[k]:
            raise ValueError(f"model_args {k}={cfg.model_args[k]!r} does not match the data ({data.name}: {k}="
                             f"{sized[k]!r}); pass image_size=/channels= to convert the data instead")
    return get_config(cfg.model, **{**sized, **cfg.model_args})


def build_objective(cfg: TrainConfig, mcfg: DiTConfig) -> GaussianDiffusion | FlowMatching:
    """DiT's diffusion (T = 1000, linear β, learned Σ when the model has it) or a `FlowMatching`; both have
    `training_losses(model, x, t, model_kwargs, noise)`."""
    if cfg.objective == "flow":
        return create_flow(cfg.path or "linear", cfg.prediction or "velocity", cfg.loss_weight,
                           t_sampling=cfg.t_sampling or "uniform")
    return create_diffusion("", learn_sigma=mcfg.learn_sigma)


def describe_objective(objective) -> dict:
    """What checkpoints record, e.g. {"objective": "ddpm"} or {"objective": "flow", "path": "linear", ...}."""
    return objective.describe() if isinstance(objective, FlowMatching) else {"objective": "ddpm"}
