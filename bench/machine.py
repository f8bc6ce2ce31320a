"""The machine a benchmark ran on, recorded with its figures (`make bench`, bench/run.py).

Throughput means little without the CPU (or GPU), the cores the process may use, the memory, the software
versions, how loaded the machine was and its practical matrix-multiply peak (which the FLOP rates are read
against): this module measures those, and nothing of the cases themselves.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

from peak import matmul_peak


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


def peak_dtype(device: str) -> str:
    """The precision rnnlm computes in on `device` (bf16 mixed precision on a GPU), whose peak counts."""
    return "bfloat16" if device == "cuda" else "float32"


def measure_peak(device: str, quick: bool) -> dict:
    """The first peak measurement, before the cases: `peak_dtype`, `peak_gflops` and, on a GPU, the
    float32 peak too (`peak_gflops_fp32`: the reference computes in float32 there)."""
    dtype = peak_dtype(device)
    peak = {"peak_dtype": dtype, "peak_gflops": matmul_peak(device, dtype, 1.0 if quick else 3.0)}
    if device == "cuda":
        peak["peak_gflops_fp32"] = matmul_peak(device, "float32", 1.0)
    return peak


def remeasure_peak(device: str, best: float) -> float:
    """A second measurement after the cases: the better of the two, the less disturbed by other load."""
    return max(best, matmul_peak(device, peak_dtype(device), 1.0))
