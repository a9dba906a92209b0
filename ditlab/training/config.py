"""`TrainConfig`: every option of a training run (the `ditlab train` flags are generated from its fields), and the
model config sized to the data."""
from dataclasses import dataclass, field, fields

from ..model import DiTConfig, get_config

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
RECIPE_NAMES = ("auto", "quick", "paper")
RECIPE_FIELDS = ("model", "steps", "batch_size", "lr", "warmup_steps", "ema_decay")  # None: the recipe decides


@dataclass
class TrainConfig:
    recipe: str = "auto"  # auto | quick | paper: the hyper-parameters left unset below (None); see recipes.py
    model: str | None = None  # a config name (ditlab.config_names()), sized to the data; None: the recipe's
    model_args: dict = field(default_factory=dict)  # DiTConfig overrides, e.g. {"depth": 4}
    data: str = "digits"  # built-in name, Hugging Face name, or a local .npz / .zip / folder
    image_size: int | None = None  # resize the data (default: the data's own size)
    channels: int | None = None  # 1 or 3 to convert the data (default: its own)
    limit: int | None = None  # use only this many training images
    vae: str | None = None  # latent mode: a diffusers AutoencoderKL (local folder or Hub id); latents are cached
    out_dir: str = "runs/train"
    steps: int | None = None  # None: the recipe's
    batch_size: int | None = None  # global batch, split across DDP ranks; None: the recipe's
    lr: float | None = None  # AdamW learning rate; None: the recipe's
    warmup_steps: int | None = None  # linear lr warm-up from 0 over this many steps; None: the recipe's
    weight_decay: float = 0.0
    ema_decay: float | None = None  # None: the recipe's
    ema_warmup: bool = True  # decay = min(ema_decay, (1 + step) / (10 + step)): EMA useful in short runs
    class_dropout_prob: float = 0.1
    learn_sigma: bool = True
    grad_clip: float | None = None
    grad_checkpointing: bool = False
    precision: str = "auto"  # auto: bf16 on GPUs that have it (fp16 + grad scaler on older ones); on CPUs bf16
    #                          where the CPU has native bf16 and the model is wide enough to gain (hardware.py)
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    log_every: int = 25
    ckpt_every: int = 500
    sample_every: int = 500  # 0: never; an EMA sample grid PNG under samples/
    sample_steps: int = 25
    sample_cfg: float = 4.0
    verdict: bool = True  # end by judging a guided sample grid (data with a judge: digits, MNIST, CIFAR-10)
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "sample_steps"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or self.warmup_steps < 0):
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be >= 0, got {self.sample_every}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.recipe not in RECIPE_NAMES:
            raise ValueError(f"recipe must be one of {list(RECIPE_NAMES)}, got {self.recipe!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be None or > 0, got {self.grad_clip}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown TrainConfig fields {sorted(set(d) - known)}; valid: {sorted(known)}")
        return cls(**d)


def build_model_config(cfg: TrainConfig, data) -> DiTConfig:
    """The model config sized to the data; explicit conflicting overrides are an error."""
    size = data.image_size
    sized = dict(input_size=size if isinstance(size, int) else tuple(size), in_channels=data.channels,
                 num_classes=data.num_classes, class_dropout_prob=cfg.class_dropout_prob, learn_sigma=cfg.learn_sigma)
    for k in ("input_size", "in_channels", "num_classes"):
        if k in cfg.model_args and cfg.model_args[k] != sized[k]:
            raise ValueError(f"model_args {k}={cfg.model_args[k]!r} does not match the data ({data.name}: {k}="
                             f"{sized[k]!r}); pass image_size=/channels= to convert the data instead")
    return get_config(cfg.model, **{**sized, **cfg.model_args})
