"""`TrainConfig`: every option of a training run (the `ditlab train` flags are generated from its fields), and the
model config sized to the data."""
from dataclasses import dataclass, field, fields

from ..model import DiTConfig, get_config

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    model: str = "DiT-Mi/4"  # a config name (ditlab.config_names()); sized to the data by default
    model_args: dict = field(default_factory=dict)  # DiTConfig overrides, e.g. {"depth": 4}
    data: str = "digits"  # built-in name, Hugging Face name, or a local .npz / .zip / folder
    image_size: int | None = None  # resize the data (default: the data's own size)
    channels: int | None = None  # 1 or 3 to convert the data (default: its own)
    limit: int | None = None  # use only this many training images
    vae: str | None = None  # latent mode: a diffusers AutoencoderKL (local folder or Hub id); latents are cached
    out_dir: str = "runs/train"
    steps: int = 2000
    batch_size: int = 64  # global batch, split across DDP ranks
    lr: float = 1e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay = min(ema_decay, (1 + step) / (10 + step)): EMA useful in short runs
    class_dropout_prob: float = 0.1
    learn_sigma: bool = True
    grad_clip: float | None = None
    grad_checkpointing: bool = False
    precision: str = "auto"  # auto: bf16 on GPUs that have it, fp16 + grad scaler on older GPUs, fp32 on CPU
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    log_every: int = 25
    ckpt_every: int = 500
    sample_every: int = 500  # 0: never; an EMA sample grid PNG under samples/
    sample_steps: int = 25
    sample_cfg: float = 4.0
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "sample_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be >= 0, got {self.sample_every}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
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
