"""`trainer.precision=auto`: bf16 mixed precision where the hardware computes bf16 natively, else float32.

On a CPU, oneDNN runs bf16 matrix multiplies on AMX tiles (flag `amx_bf16`) or AVX-512 BF16 dot products
(`avx512_bf16`); without either, bf16 is emulated in float32 registers and runs slower than float32 itself.
So the choice reads the CPU's flags, never assumes. On CUDA it asks the GPU (Ampere and later: bf16).
An explicit `trainer.precision=...` is taken as it is.
"""

from __future__ import annotations

from typing import NamedTuple

from rnnlm.cpu import cpu_flags

AUTO = "auto"
# CPU flags (as /proc/cpuinfo spells them) of units that compute bf16 natively, best first.
BF16_CPU_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX-512 BF16"}


class Precision(NamedTuple):
    value: str  # what Lightning's Trainer gets: "bf16-mixed", "32-true", ...
    reason: str  # why, for the start-up summary


def cpu_bf16_units(flags: frozenset[str] | None = None) -> list[str]:
    """The CPU's native bf16 units by name (e.g. ["AMX-BF16", "AVX-512 BF16"]); empty without any."""
    flags = cpu_flags() if flags is None else flags
    return [name for flag, name in BF16_CPU_FLAGS.items() if flag in flags]


def _uses_cuda(accelerator: str | None) -> bool:
    if str(accelerator) in ("gpu", "cuda"):
        return True
    if str(accelerator) not in ("auto", "None"):
        return False
    import torch

    return torch.cuda.is_available()


def choose_precision(requested: object, accelerator: str | None) -> Precision:
    """`trainer.precision` as Lightning takes it, and why: `auto` is resolved for this machine."""
    if str(requested) != AUTO:
        return Precision(str(requested), "set by trainer.precision")
    if _uses_cuda(accelerator):
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return Precision("bf16-mixed", f"auto: {torch.cuda.get_device_name(0)} computes bf16")
        return Precision("32-true", "auto: this GPU has no native bf16")
    units = cpu_bf16_units()
    if units:
        return Precision("bf16-mixed", f"auto: the CPU has {' and '.join(units)}")
    return Precision(
        "32-true", "auto: the CPU has neither AMX nor AVX-512 BF16 (bf16 would be emulated, slower)"
    )


__all__ = ["AUTO", "Precision", "choose_precision", "cpu_bf16_units", "cpu_flags"]
