"""The output layer's loss: a fused, token-chunked linear + cross-entropy.

`linear_cross_entropy(h, weight, bias, target)` equals
`F.cross_entropy(F.linear(h, weight, bias), target, reduction=...)` in value and gradients, but never holds
the (N, V) logits or log-probabilities of all N tokens at once. It walks the tokens in chunks of a few
hundred rows, and for each chunk computes the logits into one reused buffer, turns them into
probabilities in place, reads off the loss, subtracts the one-hot targets (the gradient of the logits) and
multiplies that straight back into the three gradients (hidden states, weight, bias). The backward pass
then has nothing left to do but hand those gradients over.

Why it pays on a CPU: the classic recipe (`log_softmax` + `NLLLoss`) makes about ten full passes over an
N x V array per step (bias broadcast, log-softmax forward, NLL's zero-filled gradient, log-softmax backward,
the bias-gradient reduction, and the page faults of allocating each fresh 40 MB array). Here the chunk
(a few MB) stays in the last-level cache between the matrix multiplies, and only those multiplies touch
main memory.
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
    ) -> Tensor:
        n, _ = h.shape
        v = weight.size(0)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and bias is not None
        wt = weight.t()
        buf = h.new_empty(min(rows, n), v)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.empty_like(weight) if need_w else None
        grad_b = torch.empty_like(bias) if need_b else None
        total = h.new_zeros((), dtype=torch.float64)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            hc, yc = h[start:stop], target[start:stop].unsqueeze(1)
            z = buf[: stop - start]
            if bias is not None:
                torch.addmm(bias, hc, wt, out=z)  # logits (c, V)
            else:
                torch.mm(hc, wt, out=z)
            z_y = z.gather(1, yc)
            z_max, arg = z.max(1, keepdim=True)
            torch.softmax(z, 1, out=z)  # probabilities, in place
            # lse = max + log(sum exp(z - max)) and the probability of the argmax is 1 / sum exp(z - max):
            # neither underflows, whatever the logits.
            p_max = z.gather(1, arg)
            total += (z_max - z_y - p_max.log()).sum(dtype=torch.float64)
            if not (need_h or need_w or need_b):
                continue
            z.scatter_add_(1, yc, z.new_full(yc.shape, -1.0))  # d(sum of losses) / d(logits)
            if need_h:
                gh = grad_h[start:stop]
                torch.mm(z, weight, out=gh)
                if scale != 1.0:
                    gh.mul_(scale)
            if need_w:
                hs = hc if scale == 1.0 else hc * scale
                if start == 0:
                    torch.mm(z.t(), hs, out=grad_w)
                else:
                    grad_w.addmm_(z.t(), hs)
            if need_b:
                if start == 0:
                    torch.sum(z, 0, out=grad_b)
                else:
                    grad_b += z.sum(0)
        if need_b and scale != 1.0:
            grad_b.mul_(scale)
        ctx.grads = (grad_h, grad_w, grad_b)
        return (total * scale).to(h.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        grads = ctx.grads  # freed with the graph
        if not _is_one(grad_out):
            grads = tuple(None if g is None else g * grad_out for g in grads)
        return (*grads, None, None, None)


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
    if torch.is_grad_enabled() and (
        h.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    ):
        return _LinearCrossEntropy.apply(h, weight, bias, target, scale, rows)
    return _nll_no_grad(h, weight, bias, target, rows) * scale


def _nll_no_grad(
    h: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, rows: int
) -> Tensor:
    """Summed cross-entropy without gradients (evaluation): log-softmax of one chunk at a time."""
    n = h.size(0)
    wt = weight.t()
    buf = h.new_empty(min(rows, n), weight.size(0))
    total = h.new_zeros((), dtype=torch.float64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        z = buf[: stop - start]
        if bias is not None:
            torch.addmm(bias, h[start:stop], wt, out=z)
        else:
            torch.mm(h[start:stop], wt, out=z)
        torch.log_softmax(z, 1, out=z)
        total -= z.gather(1, target[start:stop].unsqueeze(1)).sum(dtype=torch.float64)
    return total.to(h.dtype)


__all__ = ["CHUNK_ELEMENTS", "chunk_rows", "linear_cross_entropy"]
