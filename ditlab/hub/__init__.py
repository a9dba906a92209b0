"""Beyond this repository: 🤗 diffusers interop, the released DiT-XL/2 weights and the Stable Diffusion VAE,
and the multi-process sampler that writes the `.npz` the standard FID suite reads.

    interop.py     DiT <-> diffusers DiTTransformer2DModel, DiTPipeline, diffusers schedulers
    pretrained.py  the released DiT-XL/2 checkpoints, the SD VAE, the paper's sampling settings
    sample_ddp.py  `torchrun -m ditlab.hub.sample_ddp`: many samples into one ADM-style .npz
"""
from .interop import from_diffusers, is_exact, load_pipeline, make_exact, scheduler_from_name, to_diffusers, to_pipeline
from .pretrained import RELEASED, download_released, load_released, load_sd_vae, paper_settings, sample_imagenet

__all__ = ["RELEASED", "download_released", "from_diffusers", "is_exact", "load_pipeline", "load_released",
           "load_sd_vae", "make_exact", "paper_settings", "sample_imagenet", "scheduler_from_name", "to_diffusers",
           "to_pipeline"]
