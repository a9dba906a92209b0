"""How a run computes: the precision (bf16 / fp16 + grad scaler / fp32) and DDP processes."""
import os

import torch
import torch.distributed as dist


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        # a T4 emulates bf16 slowly: only native support counts
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "fp32"


def init_distributed() -> tuple[int, int]:
    """(rank, world_size), starting the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def on_rank0(fn, rank: int, world: int, device: torch.device) -> None:
    """Run `fn()` on rank 0 only (e.g. taking the run folder); when it raises, the other ranks raise too instead
    of waiting for rank 0 forever."""
    error = None
    if rank == 0:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - shared with the other ranks, then re-raised below
            error = e
    if world > 1:
        ok = torch.tensor([int(error is None)], device=device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if error is None and not ok.item():
            raise RuntimeError("rank 0 could not start the run; its error message says why")
    if error is not None:
        raise error
