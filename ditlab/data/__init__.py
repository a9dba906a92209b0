"""Datasets, held in memory as uint8 tensors (`ImageDataset`):

    builtin.py    `digits` and `shapes`, generated from a fixed seed (no download)
    files.py      local files: a .npz of arrays, a .zip or folder of class-named image folders
    datasets.py   `ImageDataset` and `load_dataset(name_or_path)`: built-in, Hugging Face or local, cached
    latents.py    latent mode (paper §3.1): VAE latents of a dataset, encoded once and cached
    imagenet.py   the 1000 ImageNet class names of the released DiTs
"""
from .datasets import DATASET_NAMES, HF_DATASETS, ImageDataset, load_dataset
from .imagenet import imagenet_class_index, imagenet_classes, imagenet_labels, imagenet_names
from .latents import LatentDataset, decode_latents, encode_latents, load_vae

__all__ = ["DATASET_NAMES", "HF_DATASETS", "ImageDataset", "LatentDataset", "decode_latents", "encode_latents",
           "imagenet_class_index", "imagenet_classes", "imagenet_labels", "imagenet_names", "load_dataset", "load_vae"]
