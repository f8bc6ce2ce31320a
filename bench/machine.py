"""The machine a benchmark ran on, recorded with its figures (`make bench`, bench/run.py).

Throughput means little without the CPU (or GPU), the cores the process may use, the memory, the software
versions, how loaded the machine was and its practical matrix-multiply peak (which the FLOP rates are read
against): this module measures those, and nothing of the cases themselves. It also says whether bf16 is
worth measuring here, by the test rnnlm's own `trainer.precision=auto` makes (rnnlm.training.precision,
imported): only where the hardware computes bf16 natively (AMX or AVX-512 BF16 on a CPU, a bf16 GPU);
elsewhere bf16 is emulated and slower than float32.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

from peak import matmul_peak

from rnnlm.training import precision

# CPU flags recorded with the figures: the bf16 units (AMX tiles, AVX-512 BF16) and the vector widths.
CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
# Each measured peak's key in results.json, by dtype.
PEAK_KEYS = {"float32": "peak_gflops_fp32", "bfloat16": "peak_gflops_bf16"}


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, logged with each run: other load skews a round."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def _memory_gb() -> float:
    """Total memory in GiB (NaN where /proc/meminfo cannot be read)."""
    mem_gb = math.nan
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return mem_gb


def describe(device: str) -> dict:
    """CPU, cores available to this process, memory, Python / torch / Lightning versions, and the GPU
    with its cuDNN on `device == "cuda"`: results.json's `machine`, the report's machine lines."""
    import torch

    info = {
        "cpu": _cpu_name(),
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gb": round(_memory_gb(), 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
        "cpu_flags": {flag: flag in precision.cpu_flags() for flag in CPU_FLAGS},
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
    try:
        import lightning

        info["lightning"] = lightning.__version__
    except ImportError:
        pass
    return info


def precision_plan(device: str) -> dict:
    """Whether the bf16 side runs on `device` (`bf16`) and why (`bf16_why`: the units, or what is
    missing), and what `trainer.precision=auto` picks here (`auto`, `auto_reason`)."""
    if device == "cuda":
        import torch

        run = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        why = torch.cuda.get_device_name(0) if run else "this GPU has no native bf16"
        chosen = precision.choose_precision(precision.AUTO, "gpu")
    else:
        units = precision.cpu_bf16_units()
        run = bool(units)
        why = " and ".join(units) if run else "this CPU has neither AMX nor AVX-512 BF16"
        chosen = precision.choose_precision(precision.AUTO, "cpu")
    return {"bf16": run, "bf16_why": why, "auto": chosen.value, "auto_reason": chosen.reason}


def measure_peak(device: str, quick: bool, bf16: bool) -> dict:
    """The first peak measurements, before the cases: float32 always (the reference and rnnlm's
    32-true path), bfloat16 where `bf16` (the bf16 side runs): PEAK_KEYS."""
    seconds = 1.0 if quick or device == "cuda" else 3.0
    dtypes = ["float32", "bfloat16"] if bf16 else ["float32"]
    return {PEAK_KEYS[d]: matmul_peak(device, d, seconds) for d in dtypes}


def remeasure_peak(device: str, results: dict) -> dict:
    """A second measurement of each peak after the cases: the better of the two, the less disturbed
    by other load."""
    return {
        key: max(results[key], matmul_peak(device, dtype, 1.0))
        for dtype, key in PEAK_KEYS.items()
        if key in results
    }
