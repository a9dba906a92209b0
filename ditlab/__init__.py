"""ditlab: a teaching and exploration kit for Diffusion Transformers (Peebles & Xie, 2022)."""
from .checkpoint import load_model, save_model
from .configs import DiTConfig, config_names, get_config
from .flops import count_flops, count_params, estimate_flops, estimate_params
from .model import DiT, build_model
from .patchify import patchify, unpatchify
from .posemb import sincos_2d

__version__ = "0.1.0"
