"""What every translation model shares: the special ids, the decoding interface and the target loss.

A translation model reads a source batch (B, S) (right-padded with PAD, lengths src_len) and scores a
target batch (B, T) (the target ids followed by EOS, right-padded with PAD, no BOS: the model prepends
BOS to build its own inputs). Every one implements

    nll(src, src_len, tgt, reduction)  -> float32 cross-entropy over the non-PAD target positions
    start(src, src_len)                -> state: the encoded source, whatever decoding needs
    step(state, prev (N,))             -> (log_probs (N, V_tgt) float32, state)
    reorder(state, index (N',))        -> state with the rows `index` (beam search, pruning)

and `beam.py` decodes any of them through those three calls.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from rnnlm.models.loss import linear_cross_entropy

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


class TranslationModel(Protocol):
    src_vocab: int
    tgt_vocab: int

    def nll(self, src: Tensor, src_len: Tensor, tgt: Tensor, reduction: str = "sum") -> Tensor: ...

    def start(self, src: Tensor, src_len: Tensor) -> Any: ...

    def step(self, state: Any, prev: Tensor) -> tuple[Tensor, Any]: ...

    def reorder(self, state: Any, index: Tensor) -> Any: ...


def check_vocab(name: str, size: int) -> None:
    if not isinstance(size, int) or size <= len(SPECIALS):
        raise ValueError(
            f"{name}={size} must be an integer > {len(SPECIALS)} (PAD, BOS, EOS, UNK come first): "
            "build the model from the tokenizer's vocabulary size"
        )


def check_reduction(reduction: str) -> None:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction={reduction!r}: use 'sum' or 'mean'")


def decoder_inputs(tgt: Tensor) -> Tensor:
    """tgt (B, T) = y_1 .. y_T (EOS, PAD) -> the teacher-forced inputs BOS, y_1 .. y_{T-1} (B, T)."""
    return torch.cat([tgt.new_full((tgt.size(0), 1), BOS), tgt[:, :-1]], 1)


def padding_mask(lengths: Tensor, width: int) -> Tensor:
    """(B,) lengths -> (B, width) bool, True on the PAD positions (what attention must not read)."""
    return torch.arange(width, device=lengths.device) >= lengths.to(torch.long).unsqueeze(1)


def target_nll(
    h: Tensor, weight: Tensor, bias: Tensor | None, tgt: Tensor, reduction: str
) -> Tensor:
    """Cross-entropy of tgt (B, T) under logits h @ weight.T + bias, h (B, T, D), PAD positions skipped.

    Only the real target tokens reach the fused output layer (no (B*T, V) logits, no wasted PAD rows);
    "mean" is per target token. float32 under autocast (the fused loss sums in the weight's dtype).
    """
    check_reduction(reduction)
    keep = tgt != PAD  # (B, T)
    loss = linear_cross_entropy(h[keep], weight, bias, tgt[keep], reduction=reduction)
    return loss.float()


def log_probs(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """h (N, D) -> float32 log-probabilities (N, V): a decoding step's output."""
    logits = torch.nn.functional.linear(
        h, weight.to(h.dtype), None if bias is None else bias.to(h.dtype)
    )
    return torch.log_softmax(logits.float(), -1)


__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPECIALS",
    "UNK",
    "TranslationModel",
    "check_reduction",
    "check_vocab",
    "decoder_inputs",
    "log_probs",
    "padding_mask",
    "target_nll",
]
