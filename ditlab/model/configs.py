"""Model configurations: the paper's 12 (Table 1: S/B/L/XL × patch 2/4/8) and small CPU-sized ones, plus the
modern block's options (RMSNorm, SwiGLU, QK-norm, 2D RoPE), each off by default."""
from dataclasses import asdict, dataclass, fields, replace

from ..checks import is_int, of_type, one_of, refuse

from .blocks import BLOCKS
from .modern import MLPS, NORMS

# name: (depth, hidden_size, num_heads); paper Table 1, plus two sizes for a laptop CPU at 28-32 px
SIZES = {
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
    "Ti": (8, 192, 3),  # ditlab: 5.5M params (ViT-Ti width); 32 px, p=4: 0.24 Gflops
    "Mi": (6, 128, 4),  # ditlab: 1.9M params; 32 px, p=4: 0.08 Gflops, trains on a CPU in minutes
    "Nano": (4, 64, 4),  # ditlab: 0.33M params; 16 px, p=2: 0.015 Gflops (the demo model)
    "Pico": (3, 48, 3),  # ditlab: 0.15M params; the small end of the CPU scaling study
}
PAPER_SIZES = ("S", "B", "L", "XL")
PATCH_SIZES = (2, 4, 8)
POS_EMBEDS = ("sincos", "learned", "none")  # "none": positions only through RoPE


@dataclass(frozen=True)
class DiTConfig:
    """Everything needed to build a DiT. Paper defaults: 256 px images -> 32×32×4 VAE latents, ImageNet."""

    input_size: int | tuple[int, int] = 32  # latent (or pixel) side, or (H, W)
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1  # > 0 adds the null class used by classifier-free guidance
    num_classes: int = 1000
    learn_sigma: bool = True  # output ε and the Σ interpolation v: 2·C channels
    block: str = "adaLN-Zero"
    pos_embed: str = "sincos"
    # the modern block (SD3, Flux, LightningDiT), each off by default: the paper's model is unchanged
    norm: str = "layernorm"  # or "rmsnorm"
    mlp: str = "gelu"  # or "swiglu"
    qk_norm: bool = False  # RMSNorm on queries and keys
    rope: bool = False  # 2D rotary positions in self-attention

    def __post_init__(self):
        if isinstance(self.input_size, (list, tuple)):
            object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        h, w = self.hw
        ints = ("patch_size", "in_channels", "hidden_size", "depth", "num_heads", "num_classes")
        refuse("", [(not is_int(v) or v < 1, f"{k} must be a positive int, got {v!r}")
                    for k, v in ((k, getattr(self, k)) for k in ints)])
        d, heads = self.hidden_size, self.num_heads
        refuse("", [(h < 1 or w < 1 or h % self.patch_size or w % self.patch_size,
                     f"input_size {self.input_size} must be positive and divisible by patch_size={self.patch_size}"),
                    (d % heads != 0, f"hidden_size={d} is not divisible by num_heads={heads}; valid num_heads divide "
                                     f"it, e.g. {[k for k in range(1, 33) if d % k == 0]}"),
                    (d % 4 != 0, f"hidden_size must be divisible by 4 for the 2D sin-cos embedding, got {d}")])
        for name, allowed in (("block", BLOCKS), ("pos_embed", POS_EMBEDS), ("norm", NORMS), ("mlp", MLPS)):
            one_of(name, getattr(self, name), allowed)
        refuse("", [*((not isinstance(getattr(self, k), bool), f"{k} must be True or False, got {getattr(self, k)!r}")
                      for k in ("qk_norm", "rope")),
                    (self.rope and (d // heads) % 4 != 0,
                     f"rope=True needs a head dim (hidden_size / num_heads = {d // heads}) divisible by 4: half of "
                     "each head's channel pairs rotate with the row, half with the column"),
                    (not 0 <= self.class_dropout_prob < 1,
                     f"class_dropout_prob must be in [0, 1), got {self.class_dropout_prob}"),
                    (self.mlp_ratio <= 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")])

    @property
    def hw(self) -> tuple[int, int]:
        s = self.input_size
        return (s, s) if isinstance(s, int) else tuple(s)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (H/p, W/p)."""
        h, w = self.hw
        return h // self.patch_size, w // self.patch_size

    @property
    def num_tokens(self) -> int:
        gh, gw = self.grid
        return gh * gw

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def block_options(self) -> dict:
        """Keyword options every block and the final layer get (the modern block's parts)."""
        return dict(norm=self.norm, mlp=self.mlp, qk_norm=self.qk_norm, rope_grid=self.grid if self.rope else None)

    @property
    def has_null_class(self) -> bool:
        return self.class_dropout_prob > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(d["input_size"]) if isinstance(d["input_size"], tuple) else d["input_size"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DiTConfig":
        _check_fields(d)
        return cls(**d)

    def replace(self, **changes) -> "DiTConfig":
        return replace(self, **changes)


def _check_fields(names) -> None:
    known = {f.name for f in fields(DiTConfig)}
    if set(names) - known:
        raise ValueError(f"unknown DiTConfig fields {sorted(set(names) - known)}; valid fields: {sorted(known)}")


def config_names(paper_only: bool = False) -> list[str]:
    sizes = PAPER_SIZES if paper_only else tuple(SIZES)
    return [f"DiT-{s}/{p}" for s in sizes for p in PATCH_SIZES]


def get_config(name: str, **overrides) -> DiTConfig:
    """`get_config("DiT-XL/2")` -> the paper's config (256 px ImageNet latents); keyword overrides for the rest.

    Small sizes ("Ti", "Mi", "Nano", "Pico") default to 32×32 grayscale images with 10 classes."""
    if isinstance(name, DiTConfig):
        return name.replace(**overrides)
    of_type("config", name, str, "a name such as 'DiT-XL/2' or a DiTConfig")
    size, _, patch = name.removeprefix("DiT-").partition("/")
    if size not in SIZES or not patch.isdigit():
        raise ValueError(f"unknown config {name!r}; valid names: {', '.join(config_names())} "
                         f"(any patch size p works as 'DiT-<size>/<p>')")
    _check_fields(overrides)
    depth, hidden, heads = SIZES[size]
    base = dict(patch_size=int(patch), hidden_size=hidden, depth=depth, num_heads=heads)
    if size not in PAPER_SIZES:
        base.update(input_size=32, in_channels=1, num_classes=10)
    return DiTConfig(**{**base, **overrides})
