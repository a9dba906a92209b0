"""Which checkpoint, and reading and writing it safely.

    resolve.py    a shipped name, a run folder, a file or a released name -> the file to read (one resolver for all)
    formats.py    ditlab files, run folders, the official release and train formats: load_model, save_model
    released.py   the released DiT-XL/2 weights: their configs and the one-time download into the cache
"""
from .formats import (OBJECTIVES, TRAIN_FORMAT, infer_config, load_model, load_state_dict_checked, read_checkpoint,
                      read_objective, read_vae, safe_torch_load, save_model)
from .released import RELEASED, Release, download_released, release_cache_dir
from .resolve import (CHECKPOINT_DIR, checkpoint_dir, closest, local_runs, not_found, not_shipped, resolve_checkpoint,
                      shipped_names)

__all__ = ["CHECKPOINT_DIR", "OBJECTIVES", "RELEASED", "Release", "TRAIN_FORMAT", "checkpoint_dir", "closest",
           "download_released", "infer_config", "load_model", "load_state_dict_checked", "local_runs", "not_found",
           "not_shipped", "read_checkpoint", "read_objective", "read_vae", "release_cache_dir", "resolve_checkpoint",
           "safe_torch_load", "save_model", "shipped_names"]
