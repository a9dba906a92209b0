"""Datasets, held in memory as uint8 tensors (`ImageDataset`):

    builtin.py    `digits` and `shapes`, generated from a fixed seed (no download)
    files.py      local files: a .npz of arrays, a .zip or folder of class-named image folders
    datasets.py   `ImageDataset` and `load_dataset(name_or_path)`: built-in, Hugging Face or local, cached
    autoencoder.py  small KL autoencoders (diffusers AutoencoderKL) as ditlab files; which VAE a name means
    latents.py    latent mode (paper §3.1): VAE latents of a dataset, encoded once and cached
    imagenet.py   the 1000 ImageNet class names of the released DiTs
"""
from .autoencoder import (build_vae, read_vae_file, resolve_vae, save_vae, shipped_vaes, small_vae_config,
                          vae_dir)
from .datasets import DATASET_NAMES, HF_DATASETS, ImageDataset, load_dataset
from .imagenet import imagenet_class_index, imagenet_classes, imagenet_labels, imagenet_names
from .latents import LatentDataset, decode_latents, encode_latents, load_vae

__all__ = ["DATASET_NAMES", "HF_DATASETS", "ImageDataset", "LatentDataset", "build_vae", "decode_latents",
           "encode_latents", "imagenet_class_index", "imagenet_classes", "imagenet_labels", "imagenet_names",
           "load_dataset", "load_vae", "read_vae_file", "resolve_vae", "save_vae", "shipped_vaes", "small_vae_config",
           "vae_dir"]
