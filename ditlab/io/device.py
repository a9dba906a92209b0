"""The device to run on, from a name."""
import os

import torch


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
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"device {name!r}: CUDA is not available here (torch {torch.__version__}, no usable GPU); "
                             "use 'cpu' or 'auto'")
        if device.index is not None and device.index >= n:
            raise ValueError(f"device {name!r}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: MPS (Apple GPU) is not available here; use 'cpu' or 'auto'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device
