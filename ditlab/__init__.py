"""ditlab: a teaching and exploration kit for Diffusion Transformers (Peebles & Xie, 2022).

Light imports only: heavier pieces (diffusers interop, metrics, widgets) load on first use.
"""
from .checkpoint import load_model, save_model
from .configs import DiTConfig, config_names, get_config
from .data import ImageDataset, load_dataset
from .flops import count_flops, count_params, estimate_flops, estimate_params
from .model import DiT, build_model
from .patchify import patchify, unpatchify
from .posemb import sincos_2d
from .respace import create_diffusion, space_timesteps
from .diffusion import GaussianDiffusion
from .sample import sample
from .train import TrainConfig, train

__version__ = "0.1.0"

_LAZY = {
    "to_diffusers": "interop", "from_diffusers": "interop", "to_pipeline": "interop", "load_pipeline": "interop",
    "scheduler_from_name": "interop", "load_released": "pretrained", "load_sd_vae": "pretrained",
    "paper_settings": "pretrained", "sample_imagenet": "pretrained", "imagenet_class_index": "pretrained",
    "encode_latents": "latents", "load_vae": "latents", "get_judge": "metrics", "evaluate": "metrics",
    "conditional_accuracy": "metrics", "frechet_distance": "metrics", "save_npz_samples": "metrics",
    "load_pretrained": "zoo",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ditlab' has no attribute {name!r}")


__all__ = [
    "DiT", "DiTConfig", "GaussianDiffusion", "ImageDataset", "TrainConfig", "build_model", "config_names",
    "count_flops", "count_params", "create_diffusion", "estimate_flops", "estimate_params", "get_config",
    "load_dataset", "load_model", "patchify", "sample", "save_model", "sincos_2d", "space_timesteps", "train",
    "unpatchify", *_LAZY,
]
