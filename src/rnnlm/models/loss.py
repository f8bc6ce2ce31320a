"""The output layer's loss: a fused, token-chunked linear + cross-entropy.

`linear_cross_entropy(h, weight, bias, target)` equals
`F.cross_entropy(F.linear(h, weight, bias), target, reduction=...)` in value and gradients, but never holds
the (N, V) logits or log-probabilities of all N tokens at once. It walks the tokens in chunks of about a
hundred and fifty, and for each chunk computes the logits into one reused buffer, turns them into
probabilities in place, reads off the loss, subtracts the one-hot targets (the gradient of the logits) and
multiplies that straight back into the three gradients (hidden states, weight, bias). The backward pass
then has nothing left to do but hand those gradients over.

Why it pays on a CPU: the classic recipe (`log_softmax` + `NLLLoss`) makes about ten full passes over an
N x V array per step (bias broadcast, log-softmax forward, NLL's zero-filled gradient, log-softmax backward,
the bias-gradient reduction, and the page faults of allocating each fresh 40 MB array), and its (N, V)
matrix multiply runs at the speed BLAS gives wide outputs. Here a chunk (a few MB) stays in the
last-level cache between the matrix multiplies, is computed in the orientation BLAS runs fastest, and only
three passes (exp, column sums, division) touch it besides the multiplies.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Floats per chunk of logits: 2M (8 MB) keeps a chunk, the weight and its gradient in a 32 MB L3.
CHUNK_ELEMENTS = 1 << 21
MIN_CHUNK_ROWS = 32


def chunk_rows(num_tokens: int, vocab_size: int, chunk_elements: int = CHUNK_ELEMENTS) -> int:
    """Tokens per chunk: about `chunk_elements` logits, at least MIN_CHUNK_ROWS rows (matmul efficiency)."""
    return max(1, min(num_tokens, max(MIN_CHUNK_ROWS, chunk_elements // max(vocab_size, 1))))


def _is_one(t: Tensor) -> bool:
    # On CPU reading the value is free; on an accelerator it would be a sync, so just multiply there.
    return t.device.type == "cpu" and t.numel() == 1 and float(t) == 1.0


# A column sum of exp(logit - shift) below this is subnormal or 0 in float32: such tokens are recomputed.
_TINY = 1e-30


def _chunked(
    h: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    scale: float,
    rows: int,
    need: tuple[bool, bool, bool],
    low: torch.dtype | None = None,
) -> tuple[Tensor, tuple[Tensor | None, Tensor | None, Tensor | None]]:
    """The summed loss x scale (float64) and the gradients asked for by `need` (h, weight, bias).

    Per chunk of c tokens:
      1. logits, vocabulary-major: z = weight @ h_c.T, a (V, c) matrix. The same numbers as
         (h_c @ weight.T).T, but BLAS runs a tall (V, c) output faster than a wide (c, V) one, and
         the passes below then all run over contiguous memory;
      2. z <- exp(z + bias - shift), one shift for the whole chunk (an upper bound of its largest logit,
         so nothing overflows); the column sums give logsumexp and the loss; z / sums are the
         probabilities. A token whose column sum underflows (its logits all far below the chunk's
         largest) is recomputed exactly from its own logits; with ordinary logits that never happens;
      3. d(loss)/d(logits) = probabilities - one-hot targets; three matrix multiplies take it back into
         the gradients (the normalisation and the targets are applied to their small factors).

    With `low` (bf16 or fp16: the autocast dtype) the three kinds of matrix multiply read operands in
    that dtype, as autocast's own linear would; everything else (exp, the sums, log-sum-exp, the loss,
    the gradients' accumulation) stays in the weight's dtype. So a chunk's logits are rounded to `low`
    once, and the loss is a float32 log-sum-exp of them, never a bf16 one.
    """
    n = h.size(0)
    v = weight.size(0)
    need_h, need_w, need_b = need
    need_grad = need_h or need_w or need_b
    acc = weight.dtype  # softmax, loss and gradient sums
    h_acc = h.to(acc)
    mixed = low is not None and low != acc
    w_mm = weight.to(low) if mixed else weight  # the matrix multiplies' operands
    h_mm = h.to(low) if mixed else h_acc
    flat = h_acc.new_empty(v * min(rows, n))
    flat_mm = w_mm.new_empty(v * min(rows, n)) if mixed else flat
    bias_col = bias.unsqueeze(1) if bias is not None else None
    bias_max = bias.max() if bias is not None else None
    grad_h = torch.empty_like(h_acc) if need_h else None
    grad_w = torch.empty_like(weight) if need_w else None
    grad_b = torch.empty_like(bias) if need_b else None
    part_w = torch.empty_like(w_mm) if need_w and mixed else None  # one chunk's (V, H) in `low`
    total = h.new_zeros((), dtype=torch.float64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        c = stop - start
        hc, yc = h_acc[start:stop], target[start:stop]
        cols = torch.arange(c, device=h.device)
        z = flat[: v * c].view(v, c)
        z_mm = flat_mm[: v * c].view(v, c)
        torch.mm(w_mm, h_mm[start:stop].t(), out=z_mm)  # logits without the bias (V, c)
        w_y = weight[yc] if mixed or need_h else None  # the target rows of W (c, H)
        # The target's logit in `acc` from the unrounded operands (a (c, H) product: cheap).
        z_y = torch.linalg.vecdot(hc, w_y) if mixed else z_mm[yc, cols]
        shift = z_mm.max().to(acc).view(1, 1)  # (1, 1): a `low` z_mm is promoted to `acc` below
        if bias_col is not None:
            z_y += bias[yc]
            shift = shift + bias_max
            torch.add(z_mm, bias_col - shift, out=z)
        else:
            torch.sub(z_mm, shift, out=z)
        z.exp_()
        sums = z.sum(0)  # (c,)
        lse = sums.log() + shift.view(())
        bad = ~(sums >= _TINY)  # underflow (or NaN)
        if bool(bad.any()):
            idx = bad.nonzero().squeeze(1)
            logits = hc[idx] @ weight.t()  # (k, V), k small
            if bias is not None:
                logits += bias
            lse[idx] = torch.logsumexp(logits, 1)
            if need_grad:
                z[:, idx] = torch.softmax(logits, 1).t()
                sums[idx] = 1.0
        total += (lse - z_y).sum(dtype=torch.float64)
        if not need_grad:
            continue
        # d(sum of losses)/d(logits) = E diag(1/sums) - Y, with E = z (the exponentials) and Y the one-hot
        # targets. The 1/sums and the -Y are applied to the small (c, H) factors, not to the (V, c) E:
        # one pass over E fewer.
        inv = (sums.reciprocal() * scale).unsqueeze(1)  # (c, 1)
        if need_b:  # while E is still in cache from the passes above
            if start == 0:
                torch.mv(z, inv.squeeze(1), out=grad_b)  # E (1/sums)
            else:
                grad_b.addmv_(z, inv.squeeze(1))
            grad_b.index_add_(0, yc, torch.full_like(grad_b[:1], -scale).expand(c))
        if mixed and (need_h or need_w):
            z_mm.copy_(z)  # E as the multiplies' operand
        if need_h:
            gh = grad_h[start:stop]
            if mixed:
                gh.copy_(torch.mm(z_mm.t(), w_mm))  # E^T W
            else:
                torch.mm(z.t(), weight, out=gh)  # E^T W
            gh.mul_(inv).sub_(w_y, alpha=scale)  # - Y^T W: the target rows of W
        if need_w:
            hs = hc * inv
            if mixed:  # E diag(1/sums) h, rounded to `low` once per chunk, summed in `acc`
                torch.mm(z_mm, hs.to(low), out=part_w)
                if start == 0:
                    grad_w.copy_(part_w)
                else:
                    grad_w.add_(part_w)
            elif start == 0:
                torch.mm(z, hs, out=grad_w)  # E diag(1/sums) h
            else:
                grad_w.addmm_(z, hs)
            grad_w.index_add_(0, yc, hc, alpha=-scale)  # - Y h
    if grad_h is not None:
        grad_h = grad_h.to(h.dtype)
    return total * scale, (grad_h, grad_w, grad_b)


def _without_autocast(h: Tensor, weight: Tensor, *args) -> tuple:
    """`_chunked` with autocast off: it casts its operands itself (`low`) and keeps its sums in float32."""
    with torch.autocast(h.device.type, enabled=False):
        return _chunked(h, weight, *args)


def _loss_dtype(h: Tensor, weight: Tensor) -> torch.dtype:
    """float32 for bf16 hidden states and float32 weights (autocast), float64 for float64 ones."""
    return torch.promote_types(h.dtype, weight.dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        h: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        scale: float,
        rows: int,
        low: torch.dtype | None,
    ) -> Tensor:
        need = (
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1],
            bias is not None and ctx.needs_input_grad[2],
        )
        loss, ctx.grads = _without_autocast(h, weight, bias, target, scale, rows, need, low)
        # For a second backward through a retained graph (rare): recompute from the inputs.
        ctx.save_for_backward(h, weight, bias, target)
        ctx.scale, ctx.rows, ctx.need, ctx.low = scale, rows, need, low
        return loss.to(_loss_dtype(h, weight))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            h, weight, bias, target = ctx.saved_tensors
            _, grads = _without_autocast(
                h, weight, bias, target, ctx.scale, ctx.rows, ctx.need, ctx.low
            )
        # Handed over, not kept: autograd then stores them as .grad as they are, without a copy.
        if not _is_one(grad_out):
            grads = tuple(None if g is None else g * grad_out for g in grads)
        return (*grads, None, None, None, None)


def linear_cross_entropy(
    h: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    reduction: str = "mean",
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Tensor:
    """Cross-entropy of `target` (N,) under the logits `h @ weight.T + bias` (h: (N, H), weight: (V, H)).

    `reduction` is "mean" or "sum" over the N tokens. Same value and gradients as
    `F.cross_entropy(F.linear(h, weight, bias), target, reduction=reduction)`, computed chunk by chunk.
    Under autocast (bf16 or fp16) the matrix multiplies run in the autocast dtype and the loss, the
    log-sum-exp and the gradients' sums in the weight's (see `_chunked`).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction={reduction!r}: use 'mean' or 'sum'")
    if h.dim() != 2 or target.shape != h.shape[:1]:
        raise ValueError(
            f"expected h (N, H) and target (N,), got {tuple(h.shape)} and {tuple(target.shape)}"
        )
    n = h.size(0)
    scale = 1.0 / n if reduction == "mean" and n else 1.0
    rows = chunk_rows(n, weight.size(0), chunk_elements)
    target = target if target.dtype == torch.long else target.long()
    h = h.contiguous()
    device = h.device.type
    low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if torch.is_grad_enabled() and (
        h.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    ):
        return _LinearCrossEntropy.apply(h, weight, bias, target, scale, rows, low)
    loss, _ = _without_autocast(h, weight, bias, target, scale, rows, (False, False, False), low)
    return loss.to(_loss_dtype(h, weight))


__all__ = ["CHUNK_ELEMENTS", "chunk_rows", "linear_cross_entropy"]
