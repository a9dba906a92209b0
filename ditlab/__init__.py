"""ditlab: a teaching and exploration kit for Diffusion Transformers (Peebles & Xie, 2022).

The library is a stack of layers; each imports only from the layers below it (tests/test_layers.py checks):

    extras, checks            a missing optional package names its pip extra; argument checks for the boundary
    io, model                 files and image grids; the DiT itself (torch + einops only)
    diffusion, data, checkpoint   noise and samplers' maths; datasets; which checkpoint a name means, read safely
    sampling                  sampling a model
    eval                      Gflops, Table 4, judge, metrics and a training run's verdict (which samples)
    training                  the training loop
    hub, studies, zoo         diffusers, the released weights' loader and the SD VAE; the scaling study; the shipped checkpoints
    teach                     the notebooks' figures and widgets
    demo, playground, cli_help   `ditlab demo`; `ditlab playground` (the widgets as a Voilà web app); --help text
    cli                       the command line

`import ditlab` is instant: the names below load their module on first use.
"""
import importlib

__version__ = "0.1.0"

_API = {
    "ditlab.model": ["DiT", "DiTConfig", "build_model", "config_names", "get_config", "patchify", "unpatchify",
                     "sincos_2d"],
    "ditlab.diffusion": ["GaussianDiffusion", "create_diffusion", "create_flow"],
    "ditlab.data": ["load_dataset", "load_vae"],
    "ditlab.checkpoint": ["load_model", "resolve_checkpoint", "save_model"],
    "ditlab.sampling": ["sample"],
    "ditlab.eval": ["count_flops", "count_params", "estimate_flops", "estimate_params", "evaluate", "get_judge"],
    "ditlab.training": ["TrainConfig", "train", "train_vae"],
    "ditlab.hub": ["from_diffusers", "load_released", "to_diffusers"],
    "ditlab.zoo": ["list_pretrained", "load_pretrained"],
}
_WHERE = {name: module for module, names in _API.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'ditlab' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
