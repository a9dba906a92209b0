"""The Diffusion Transformer itself (paper §3.2), in the order a student reads it:

    patchify.py  image <-> p×p patch tokens, the patch embedding        (notebook 01)
    posemb.py    fixed 2D sin-cos positional embeddings                  (notebook 02)
    embed.py     timestep and label embedders                            (notebook 03)
    blocks.py    the four block designs of Fig. 3 and the final layer    (notebook 03)
    configs.py   DiTConfig, the paper's 12 configs and small CPU ones
    dit.py       DiT: embed -> blocks -> decode -> (ε, Σ); CFG forward   (notebook 04)
    modern.py    the modern block's options: RMSNorm, SwiGLU, QK-norm      (notebook 07)
    rope.py      2D rotary position embedding                            (notebook 07)

Needs only torch and einops; nothing else of ditlab.
"""
from .blocks import (BLOCK_CLASSES, BLOCKS, AdaLNBlock, AdaLNZeroBlock, CrossAttentionBlock, FinalLayer, InContextBlock,
                     make_mlp, make_norm, modulate)
from .configs import PAPER_SIZES, PATCH_SIZES, SIZES, DiTConfig, config_names, get_config
from .dit import DiT, build_model
from .embed import LabelEmbedder, TimestepEmbedder, timestep_embedding
from .modern import MLPS, NORMS, SwiGLU
from .patchify import PatchEmbed, patchify, unpatchify
from .posemb import sincos_1d, sincos_2d
from .rope import Rope2D, rope_angles

__all__ = ["BLOCKS", "BLOCK_CLASSES", "AdaLNBlock", "AdaLNZeroBlock", "CrossAttentionBlock", "DiT", "DiTConfig",
           "FinalLayer", "InContextBlock", "LabelEmbedder", "MLPS", "NORMS", "PAPER_SIZES", "PATCH_SIZES", "PatchEmbed",
           "Rope2D", "SIZES", "SwiGLU", "TimestepEmbedder", "build_model", "config_names", "get_config", "make_mlp",
           "make_norm", "modulate", "patchify", "rope_angles", "sincos_1d", "sincos_2d", "timestep_embedding",
           "unpatchify"]
