"""Where and how a run computes: the device, the precision (bf16 / fp16 + grad scaler / fp32) and DDP processes."""
import os
from pathlib import Path

import torch
import torch.distributed as dist


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(name)


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


def init_distributed() -> tuple[int, int]:
    """(rank, world_size), starting the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def init_distributed() -> tuple[int, int]:
    """(rank, world_size), starting the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        # a T4 emulates bf16 slowly: only native support counts
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "fp32"


# bf16 on a CPU pays only where the matmuls are big enough to hide the casts: measured with
# benchmarks/cpu_precision.py (README "Precision on a CPU"); below this width autocast is slower than fp32.
CPU_BF16_MIN_WIDTH = 128
CPU_BF16_MIN_TOKENS = 64


def explain_precision(precision: str, device: torch.device, config=None) -> tuple[str, str]:
    """(precision, why) for a run: "auto" picks bf16 on GPUs that have it natively, fp16 + grad scaler on older
    GPUs; on CPUs bf16 where the CPU has native bf16 and the model (a DiTConfig) is wide enough to gain, else fp32."""
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
