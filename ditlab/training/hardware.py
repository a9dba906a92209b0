"""How a run computes: the precision (bf16 / fp16 + grad scaler / fp32; bf16 on CPUs where it pays) and DDP processes."""
import os
from pathlib import Path

import torch
import torch.distributed as dist


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


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX): torch reports capability AVX512 and the
    CPU flags name avx512_bf16 or amx_bf16. Elsewhere bf16 is emulated and slower than fp32."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        return False
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: not Linux, no way to tell)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.partition(":")[2].split()}


# bf16 on a CPU pays only where the matmuls are big enough to hide the casts: measured with
# benchmarks/cpu_precision.py (README "Precision on a CPU"); below this width autocast is slower than fp32.
CPU_BF16_MIN_WIDTH = 128
CPU_BF16_MIN_TOKENS = 64


def explain_precision(precision: str, device: torch.device, config=None) -> tuple[str, str]:
    """(precision, why) for a run: "auto" picks bf16 on GPUs that have it natively, fp16 + grad scaler on older
    GPUs; on CPUs bf16 where the CPU has native bf16 and the model (a DiTConfig) is large enough to gain, else fp32."""
    if precision != "auto":
        return precision, "given"
    if device.type == "cuda":
        # a T4 emulates bf16 slowly: only native support counts
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16", "the GPU has native bf16"
        return "fp16", "the GPU has no native bf16: fp16 with a gradient scaler"
    if device.type != "cpu":
        return "fp32", f"auto precision on {device.type}"
    if not cpu_has_native_bf16():
        return "fp32", "this CPU has no native bf16 (AVX512-BF16 / AMX): bf16 would be emulated, slower"
    if config is None:
        return "fp32", "no model config to judge whether bf16 pays"
    width, tokens = config.hidden_size, config.num_tokens
    if width >= CPU_BF16_MIN_WIDTH and tokens >= CPU_BF16_MIN_TOKENS:
        return "bf16", (f"this CPU has native bf16 and the model is large enough to gain (width {width} >= "
                        f"{CPU_BF16_MIN_WIDTH}, {tokens} tokens >= {CPU_BF16_MIN_TOKENS})")
    return "fp32", (f"this CPU has native bf16 but the model is too small to gain (width {width}, {tokens} tokens; "
                    f"bf16 pays from width {CPU_BF16_MIN_WIDTH} and {CPU_BF16_MIN_TOKENS} tokens)")


def resolve_precision(precision: str, device: torch.device, config=None) -> str:
    """The precision of `explain_precision`, without the reason."""
    return explain_precision(precision, device, config)[0]
