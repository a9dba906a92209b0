"""The device to run on, from a name."""
import os

import torch

from ..checks import refuse


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" (this process's GPU under torchrun, else the GPU, else the CPU), "cpu", "cuda", "cuda:N" or "mps"
    -> torch.device; a malformed name or a device this machine lacks is a ValueError saying what exists."""
    if isinstance(name, str) and name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a device name; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    cuda = device.type == "cuda"
    n = torch.cuda.device_count() if cuda and torch.cuda.is_available() else 0
    refuse(f"device {name!r}", [
        (cuda and n == 0,
         f"CUDA is not available here (torch {torch.__version__}, no usable GPU); use 'cpu' or 'auto'"),
        (cuda and 0 < n <= (device.index or 0), f"this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}"),
        (device.type == "mps" and not torch.backends.mps.is_available(),
         "MPS (Apple GPU) is not available here; use 'cpu' or 'auto'"),
        (device.type not in ("cpu", "cuda", "mps"), "not supported; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")])
    return device
