"""`model.scan=fused`: the gates and the scan of minGRU, minLSTM and QRNN in one C++ loop (CPU).

    pre (T, B, G*H), the gates' pre-activations -> the output (T, B, H), the last state (B, H)

The PyTorch path of a cell (gates, casts, the chunked scan, the output) makes about a dozen passes over
the (T, B, H) window each way; at long windows those passes, not the matrix products, bound its speed.
fused_scan.cpp reads a token's pre-activations once, computes the gates, advances the state and writes
the output; its backward walks the window once in reverse, recomputing the gates. The state is float32
(float64 for float64 inputs) from step to step; pre-activations, output and what the backward keeps are
in pre's dtype, so under bf16 autocast nothing is cast in between and the output is bfloat16, as a
linear layer's is.

The library is compiled on first use with the system's C++ compiler (`$CXX`, else `c++`; about 1 s)
into `$RNNLM_KERNEL_CACHE` (default `~/.cache/rnnlm/kernels`), keyed by the source, the compiler and
the CPU's flags, and loaded with ctypes. `model.scan=auto` (the default) uses it where it builds and
the tensors are on a CPU, the chunked scan elsewhere; `model.scan=fused` insists on it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from rnnlm.cpu import cpu_flags
from rnnlm.models.cells.keys import FUSED_CELLS

SOURCE = Path(__file__).with_name("fused_scan.cpp")
CELLS = {name: i for i, name in enumerate(FUSED_CELLS)}  # the kernel's cell codes
_DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float64: 2}
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]

_lib: ctypes.CDLL | None = None
_error: str | None = None


def _build() -> ctypes.CDLL:
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\n".join(
            [
                SOURCE.read_text(),
                compiler,
                version,
                *_FLAGS,
                *sorted(cpu_flags()),
                platform.processor(),
            ]
        ).encode()
    ).hexdigest()[:16]
    cache = Path(os.environ.get("RNNLM_KERNEL_CACHE") or Path.home() / ".cache/rnnlm/kernels")
    target = cache / f"fused_scan-{key}.so"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # built aside, then renamed: ranks race
            built = Path(tmp) / target.name
            done = subprocess.run(
                [compiler, *_FLAGS, str(SOURCE), "-o", str(built)], capture_output=True, text=True
            )
            if done.returncode:
                raise RuntimeError(
                    f"{compiler} failed: {(done.stderr.strip().splitlines() or [''])[-1]}"
                )
            os.replace(built, target)
    lib = ctypes.CDLL(str(target))
    i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.rnnlm_gated_scan_forward.argtypes = [i32, i32, i64, i64, i64] + [ptr] * 6 + [i32]
    lib.rnnlm_gated_scan_backward.argtypes = [i32, i32, i64, i64, i64] + [ptr] * 9 + [i32]
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on the first call; None (and `build_error()` says why) if they
    cannot be built here."""
    global _lib, _error
    if _lib is None and _error is None:
        try:
            _lib = _build()
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            _error = str(e)
    return _lib


def build_error() -> str | None:
    library()
    return _error


def require_library() -> None:
    """For model.scan=fused: the kernels, or a one-line ValueError that says why and what to use."""
    if library() is None:
        raise ValueError(
            f"model.scan=fused could not be built ({_error}): use model.scan=auto or chunked"
        )


def use_fused(backend: str, pre: Tensor) -> bool:
    """Whether a cell with scan backend `backend` runs the fused kernel on pre-activations `pre`."""
    if backend == "fused":
        if pre.device.type != "cpu":
            raise ValueError(
                f"model.scan=fused runs on a CPU only (the tensors are on {pre.device.type}): use "
                "model.scan=auto or compile"
            )
        require_library()
        return True
    return backend == "auto" and pre.device.type == "cpu" and library() is not None


def _ptr(x: Tensor | None) -> int | None:
    return None if x is None else x.data_ptr()


def _forward(
    cell: int, pre: Tensor, pre2: Tensor | None, h0: Tensor | None
) -> tuple[Tensor, Tensor | None, Tensor]:
    t, b, gh = pre.shape
    h = gh // (2 if cell == 0 else 3)
    y = pre.new_empty(t, b, h)
    saved = pre.new_empty(t, b, h) if cell == CELLS["qrnn"] else None  # c_t for the backward
    last = torch.empty(b, h, dtype=torch.float64 if pre.dtype == torch.float64 else torch.float32)
    code = _lib.rnnlm_gated_scan_forward(
        cell, _DTYPES[pre.dtype], t, b, h, _ptr(pre), _ptr(pre2), _ptr(h0),
        _ptr(y), _ptr(saved), _ptr(last), torch.get_num_threads(),
    )  # fmt: skip
    assert code == 0
    return y, saved, last


class GatedScan(torch.autograd.Function):
    """(pre, pre2, h0) -> (y (T, B, H) in pre's dtype, the last state (B, H) in float32/float64)."""

    @staticmethod
    def forward(ctx, cell: int, pre: Tensor, pre2: Tensor | None, h0: Tensor | None):  # noqa: ANN001
        y, saved, last = _forward(cell, pre, pre2, h0)
        ctx.cell, ctx.has_pre2, ctx.has_h0 = cell, pre2 is not None, h0 is not None
        ctx.save_for_backward(pre, pre2, h0, y, saved)
        return y, last

    @staticmethod
    def backward(ctx, gy: Tensor | None, glast: Tensor | None):  # noqa: ANN001
        pre, pre2, h0, y, saved = ctx.saved_tensors
        gy = torch.zeros_like(y) if gy is None else gy.to(y.dtype).contiguous()
        glast = None if glast is None else glast.contiguous()
        t, b, h = y.shape
        gpre = torch.empty_like(pre)
        gh0 = torch.empty_like(h0) if ctx.has_h0 and ctx.needs_input_grad[3] else None
        code = _lib.rnnlm_gated_scan_backward(
            ctx.cell, _DTYPES[pre.dtype], t, b, h, _ptr(pre), _ptr(pre2), _ptr(h0), _ptr(y),
            _ptr(saved), _ptr(gy), _ptr(glast), _ptr(gpre), _ptr(gh0), torch.get_num_threads(),
        )  # fmt: skip
        assert code == 0
        return None, gpre, gpre if ctx.has_pre2 else None, gh0


def gated_scan(
    cell: str, pre: Tensor, h0: Tensor | None = None, pre2: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """`cell` over the window from h0 (B, H) (zeros if None): its output (T, B, H) in pre's dtype (the
    state h_t for minGRU/minLSTM, o_t * c_t for QRNN) and its last state (B, H) in float32 (float64
    for float64 input). `pre2` is added to `pre` in the kernel (QRNN's x_{t-1} term)."""
    require_library()
    if pre.dtype not in _DTYPES:  # float16: the kernel reads float32, bfloat16 or float64
        pre = pre.float()
    pre = pre.contiguous()
    if pre2 is not None:
        pre2 = pre2.to(pre.dtype).contiguous()
    if h0 is not None:
        h0 = h0.to(torch.float64 if pre.dtype == torch.float64 else torch.float32).contiguous()
    if not torch.is_grad_enabled():  # generation: no autograd node, nothing kept for a backward
        y, _, last = _forward(CELLS[cell], pre, pre2, h0)
        return y, last
    return GatedScan.apply(CELLS[cell], pre, pre2, h0)


__all__ = ["CELLS", "build_error", "gated_scan", "library", "require_library", "use_fused"]
