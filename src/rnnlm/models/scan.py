"""The linear recurrence every parallel cell shares, h_t = a_t * h_{t-1} + b_t (element-wise), from h_0.

    a, b: (T, B, D)   h0: (B, D)   ->   h: (T, B, D) every h_t,  h[-1] the state to carry on

Time-major, like the recurrent kernels and the rest of RNNLM's insides.

A classic RNN cannot be computed in parallel over time because a_t depends on h_{t-1}. In the cells of
rnnlm/models/cells.py a_t and b_t depend on the inputs only, so the whole window's recurrence is this
scan, and the only sequential part is cheap element-wise arithmetic. Backends (`model.scan`):

- `sequential`: the reference, one step per token (T small steps; what `step` does for generation).
- `chunked` (the CPU default): the window cut into chunks of about sqrt(T) tokens. All chunks run their
  local recurrence from zero at once (C steps over (T/C, B, D)); then the chunks' carries go through a
  scan of their own (T/C steps); a chunk's h_t is its local h_t plus its cumulative product of a times
  the carry that reaches it. 2 sqrt(T) vectorised steps instead of T, no division, exact in linear space.
- `log`: the log-space form of Feng et al. 2024 ("Were RNNs All We Needed?", section 3.2.3 / appendix
  B): log h_t = a*_t + logcumsumexp(log b - a*)_t with a*_t = sum_{s<=t} log a_s, for a > 0. It holds
  for b >= 0; here b of any sign is split as b = b+ - b- and both halves are scanned (the recurrence is
  linear, so h = h+ - h-). Needs a > 0, which every gate of these cells is. In float32 its
  cancellations cost precision where the gates are near 0 for long (3e-2 absolute at T = 4096 with
  gates of sigmoid(+-30), against 1e-6 for the chunked scan); in float64 it agrees to 1e-12.
- `compile`: on CUDA, `torch.compile` of the chunked scan (fused kernels instead of one launch per
  element-wise op); on a CPU, where the chunked scan's steps are already single vectorised loops, it
  is the chunked scan.

All backends agree to float rounding (tests/test_scan.py); gradients flow through each by autograd.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnlm.models.cells.keys import SCAN_BACKENDS as BACKENDS  # the names live with the keys


def scan_sequential(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t, one token at a time (the reference)."""
    h = h0
    out = []
    for t in range(a.size(0)):
        h = torch.addcmul(b[t], a[t], h)
        out.append(h)
    return torch.stack(out)


def _local(a: Tensor, b: Tensor) -> Tensor:
    """The recurrence of every chunk from a zero state: (N, C, B, D) -> (N, C, B, D), C steps."""
    h = b[:, 0]
    out = [h]
    for t in range(1, a.size(1)):
        h = torch.addcmul(b[:, t], a[:, t], h)
        out.append(h)
    return torch.stack(out, 1)


def scan_chunked(a: Tensor, b: Tensor, h0: Tensor, chunk: int | None = None) -> Tensor:
    """The same recurrence in about 2 sqrt(T) vectorised steps (see the module docstring)."""
    t, bsz, d = a.shape
    c = chunk or max(1, math.isqrt(t))
    if c >= t:
        return scan_sequential(a, b, h0)
    n = -(-t // c)
    pad = n * c - t
    if pad:  # a = 1, b = 0 after the end: the state passes through unchanged
        a = torch.cat([a, a.new_ones(pad, bsz, d)])
        b = torch.cat([b, b.new_zeros(pad, bsz, d)])
    a4, b4 = a.view(n, c, bsz, d), b.view(n, c, bsz, d)
    local = _local(a4, b4)  # (N, C, B, D): each chunk from zero
    decay = torch.cumprod(a4, 1)  # (N, C, B, D): the product of a from the chunk's start to t
    # The state after chunk k: carry_k = decay_{k, last} * carry_{k-1} + local_{k, last}
    carries = scan_sequential(decay[:, -1], local[:, -1], h0)  # (N, B, D)
    entering = torch.cat(
        [h0.unsqueeze(0), carries[:-1]]
    )  # (N, B, D): the state each chunk starts from
    h = torch.addcmul(local, decay, entering.unsqueeze(1))
    return h.view(n * c, bsz, d)[:t]


def _scan_log_positive(log_a_star: Tensor, log_b: Tensor, log_h0: Tensor) -> Tensor:
    """h_t = exp(a*_t + logcumsumexp over s <= t of (log b_s - a*_s)), h_0 as a step before t = 1."""
    terms = torch.cat([log_h0.unsqueeze(0), log_b - log_a_star])  # (T+1, B, D)
    return torch.exp(log_a_star + torch.logcumsumexp(terms, 0)[1:])


def scan_log(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The same recurrence in log space (Feng et al. 2024), for a > 0 and b, h0 of any sign."""
    # A gate that underflowed to 0 would give log 0 = -inf, and a step whose half is all zeros so far
    # would give -inf - -inf in the gradient: the smallest normal number instead of 0 (its weight in
    # h is at most that number, far below the float's own resolution of h).
    tiny = torch.finfo(a.dtype).tiny
    log_a_star = torch.cumsum(torch.log(a.clamp_min(tiny)), 0)  # (T, B, D)

    def half(x: Tensor, x0: Tensor) -> Tensor:  # the scan of x's positive part, in log space
        return _scan_log_positive(
            log_a_star, torch.log(x.clamp_min(tiny)), torch.log(x0.clamp_min(tiny))
        )

    return half(b, h0) - half(-b, -h0)


_compiled = None


def _scan_compiled(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(scan_chunked, dynamic=True)
    return _compiled(a, b, h0)


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, backend: str = "chunked") -> Tensor:
    """Every h_t of h_t = a_t * h_{t-1} + b_t for a, b (T, B, D) from h0 (B, D) (zeros if None)."""
    if backend not in BACKENDS:
        raise ValueError(f"model.scan={backend!r} is not a scan backend; choose one of {BACKENDS}")
    if h0 is None:
        h0 = a.new_zeros(a.shape[1:])
    if a.size(0) == 0:
        return a
    if backend == "sequential" or a.size(0) == 1:
        return scan_sequential(a, b, h0)
    if backend == "log":
        return scan_log(a, b, h0)
    if backend == "compile" and a.is_cuda:
        return _scan_compiled(a, b, h0)
    return scan_chunked(a, b, h0)


__all__ = ["BACKENDS", "linear_scan", "scan_chunked", "scan_log", "scan_sequential"]
