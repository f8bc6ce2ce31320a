"""The linear recurrence every parallel cell shares, h_t = a_t * h_{t-1} + b_t (element-wise), from h_0.

    a, b: (T, B, D)   h0: (B, D)   ->   h: (T, B, D) every h_t,  h[-1] the state to carry on

Time-major, like the recurrent kernels and the rest of RNNLM's insides.

A classic RNN cannot be computed in parallel over time because a_t depends on h_{t-1}. In the cells of
rnnlm/models/cells/ a_t and b_t depend on the inputs only, so the whole window's recurrence is this
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

All backends agree to float rounding (tests/models/test_cells.py). The chunked scan has its own backward, a
scan of the same shape backwards in time (LinearScan); the others' gradients are autograd's.
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


def _chunk_size(t: int) -> int:
    """About sqrt(T), a divisor of T when one is near (no padding of the window), else sqrt(T)."""
    root = max(1, math.isqrt(t))
    for c in range(root, max(1, root // 2) - 1, -1):
        if t % c == 0:
            return c
    return root


def _chunked(a: Tensor, b: Tensor, h0: Tensor, chunk: int | None = None) -> Tensor:
    """The chunked scan's arithmetic, without a graph (the gradient is LinearScan.backward's)."""
    t, bsz, d = a.shape
    c = chunk or _chunk_size(t)
    if c >= t or c == 1:
        return _sequential_into(a, b, h0)
    n = -(-t // c)
    pad = n * c - t
    if pad:  # a = 1, b = 0 after the end: the state passes through unchanged
        a = torch.cat([a, a.new_ones(pad, bsz, d)])
        b = torch.cat([b, b.new_zeros(pad, bsz, d)])
    a4, b4 = a.view(n, c, bsz, d), b.view(n, c, bsz, d)
    h = torch.empty_like(b4)  # first each chunk's recurrence from zero, then the state carried in
    decay = torch.empty_like(a4)  # the product of a from the chunk's start to t
    h[:, 0], decay[:, 0] = b4[:, 0], a4[:, 0]
    for s in range(1, c):
        torch.addcmul(b4[:, s], a4[:, s], h[:, s - 1], out=h[:, s])
        torch.mul(a4[:, s], decay[:, s - 1], out=decay[:, s])
    # the state each chunk starts from
    entering = torch.empty(n, bsz, d, dtype=h.dtype, device=h.device)
    entering[0] = h0
    for k in range(1, n):
        torch.addcmul(h[k - 1, -1], decay[k - 1, -1], entering[k - 1], out=entering[k])
    h.addcmul_(decay, entering.unsqueeze(1))
    return h.view(n * c, bsz, d)[:t]


def _sequential_into(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    h = torch.empty_like(b)
    prev = h0
    for s in range(a.size(0)):
        prev = torch.addcmul(b[s], a[s], prev, out=h[s])
    return h


def _chunked_backward(a: Tensor, grad_h: Tensor) -> Tensor:
    """g_t = grad_h_t + a_{t+1} g_{t+1} (g after the window's end: 0), chunked like the forward."""
    t, bsz, d = a.shape
    c = _chunk_size(t)
    if c >= t or c == 1:
        g = torch.empty_like(grad_h)
        g[-1] = grad_h[-1]
        for s in range(t - 2, -1, -1):
            torch.addcmul(grad_h[s], a[s + 1], g[s + 1], out=g[s])
        return g
    n = -(-t // c)
    pad = n * c - t
    if pad:  # as the forward pads: no gradient arrives from after the end, so g is 0 there
        a = torch.cat([a, a.new_ones(pad, bsz, d)])
        grad_h = torch.cat([grad_h, grad_h.new_zeros(pad, bsz, d)])
    a4, gh4 = a.view(n, c, bsz, d), grad_h.view(n, c, bsz, d)
    g = torch.empty_like(gh4)  # each chunk from its end, with nothing coming in
    decay = torch.empty_like(a4)  # the product of a from t+1 to the chunk's end
    g[:, -1] = gh4[:, -1]
    decay[:, -1] = 1
    for s in range(c - 2, -1, -1):
        torch.addcmul(gh4[:, s], a4[:, s + 1], g[:, s + 1], out=g[:, s])
        torch.mul(a4[:, s + 1], decay[:, s + 1], out=decay[:, s])
    coming = torch.zeros(n, bsz, d, dtype=g.dtype, device=g.device)  # g arriving at a chunk's end
    for k in range(n - 2, -1, -1):  # from chunk k+1: a at its start times its full g there
        full = torch.addcmul(g[k + 1, 0], decay[k + 1, 0], coming[k + 1])
        torch.mul(a4[k + 1, 0], full, out=coming[k])
    g.addcmul_(decay, coming.unsqueeze(1))
    return g.view(n * c, bsz, d)[:t]


class LinearScan(torch.autograd.Function):
    """The chunked scan with its gradient as a scan of its own, backwards in time:

        g_t = dL/dh_t + a_{t+1} g_{t+1},   dL/db_t = g_t,   dL/da_t = g_t h_{t-1},   dL/dh_0 = a_1 g_1

    Autograd through the chunked loop would keep a node per step and, for each step's slice of the
    window, a zero-filled gradient of the whole window (quadratic in T); this keeps a and h only."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:  # noqa: ANN001
        with torch.no_grad():
            h = _chunked(a, b, h0)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        a, h, h0 = ctx.saved_tensors
        g = _chunked_backward(a, grad_h.contiguous())
        grad_a = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.empty_like(g)
            torch.mul(g[1:], h[:-1], out=grad_a[1:])
            torch.mul(g[0], h0, out=grad_a[0])
        grad_h0 = a[0] * g[0] if ctx.needs_input_grad[2] else None
        return grad_a, g if ctx.needs_input_grad[1] else None, grad_h0


def scan_chunked(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The same recurrence in about 2 sqrt(T) vectorised steps (see the module docstring)."""
    if not torch.is_grad_enabled() or not (a.requires_grad or b.requires_grad or h0.requires_grad):
        return _chunked(a, b, h0)
    return LinearScan.apply(a.contiguous(), b.contiguous(), h0.contiguous())


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


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, backend: str = "auto") -> Tensor:
    """Every h_t of h_t = a_t * h_{t-1} + b_t for a, b (T, B, D) from h0 (B, D) (zeros if None)."""
    if backend not in BACKENDS:
        raise ValueError(f"model.scan={backend!r} is not a scan backend; choose one of {BACKENDS}")
    if h0 is None:
        h0 = a.new_zeros(a.shape[1:])
    if a.size(0) == 0:
        return a
    if a.size(0) == 1:  # the step form: one fused multiply-add
        return torch.addcmul(b, a, h0.unsqueeze(0))
    if backend == "sequential":
        return scan_sequential(a, b, h0)
    if backend == "log":
        return scan_log(a, b, h0)
    if backend == "compile" and a.is_cuda:
        return _scan_compiled(a, b, h0)
    return scan_chunked(
        a, b, h0
    )  # also `auto` and `fused`: their kernel is the cells' (fused_scan)


__all__ = ["BACKENDS", "linear_scan", "scan_chunked", "scan_log", "scan_sequential"]
