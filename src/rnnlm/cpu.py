"""The CPU's feature flags: what trainer.precision=auto reads (AMX, AVX-512 BF16) and what keys the
fused scan's compiled kernel (built with -march=native). Pure Python, at the bottom of the layers."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


__all__ = ["cpu_flags"]
