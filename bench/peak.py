"""The machine's practical matrix-multiply peak, which the benchmarks' FLOP rates are read against."""

from __future__ import annotations

import time


def matmul_peak(device: str, dtype_name: str = "float32", seconds: float = 2.0) -> float:
    """Best achieved GFLOP/s of a large square matrix multiply (this machine's practical peak)."""
    import torch

    dtype = getattr(torch, dtype_name)
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    torch.mm(a, b, out=c)
    sync()
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        reps = 3 if device == "cpu" else 20
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        sync()
        dt = time.perf_counter() - t0
        best = max(best, 2 * n**3 * reps / dt / 1e9)
    return best
