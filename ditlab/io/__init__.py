"""Files, folders and devices every layer uses; nothing here knows about DiT.

    files    atomic writes, .safetensors tensor files, output paths checked before work
    paths    the cache folder, the files shipped with the package, the official reference outputs
    images   pixels <-> [-1, 1] floats, image grids
    device   the device to run on
    hub      whether the Hugging Face Hub can be reached
"""
from .device import resolve_device
from .files import atomic_write, check_output_dir, check_output_file, load_tensors, open_tensors, save_tensors
from .hub import hub_reachable
from .images import float_to_uint8, make_grid, save_grid, uint8_to_float
from .paths import default_cache_dir, fixture_path, shipped_path

__all__ = ["atomic_write", "check_output_dir", "check_output_file", "default_cache_dir", "fixture_path",
           "float_to_uint8", "hub_reachable", "load_tensors", "make_grid", "open_tensors", "resolve_device",
           "save_grid", "save_tensors", "shipped_path", "uint8_to_float"]
