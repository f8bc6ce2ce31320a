"""The attention of the recurrent encoder-decoder: which source positions a decoder state reads.

Two scores of a decoder state q (the query, H wide) against the encoder's outputs m_s (the memory), the
source positions' keys computed once per sentence by `keys(memory)`:

    "bahdanau" (additive, Bahdanau et al. 2015):    score(q, m_s) = v . tanh(W_q q + W_k m_s)
    "luong"    (multiplicative "general", Luong et al. 2015):  score(q, m_s) = q . (W_a m_s)

then alpha = softmax over the non-PAD positions, context = sum_s alpha_s m_s. Both run for one step
(q (B, H)) or for every step of a window at once (q (B, T, H)) as batched matrix multiplies.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ATTENTIONS = ("bahdanau", "luong")


class Attention(nn.Module):
    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        if kind not in ATTENTIONS:
            raise ValueError(f"attention={kind!r} is not known: choose one of {ATTENTIONS}")
        self.kind = kind
        self.key = nn.Linear(dim, dim, bias=False)  # W_k or W_a, applied to the memory once
        if kind == "bahdanau":
            self.query = nn.Linear(dim, dim)  # W_q (its bias is the additive score's bias)
            self.v = nn.Linear(dim, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """memory (B, S, H) -> keys (B, S, H): the part of the score that depends on the source only."""
        return self.key(memory)

    def forward(self, q: Tensor, keys: Tensor, memory: Tensor, pad: Tensor) -> Tensor:
        """q (B, H) or (B, T, H), keys and memory (B, S, H), pad (B, S) True on PAD -> context like q."""
        one = q.dim() == 2
        if one:
            q = q.unsqueeze(1)  # (B, 1, H)
        if self.kind == "luong":
            scores = torch.bmm(q, keys.transpose(1, 2))  # (B, T, S)
        else:
            e = torch.tanh(self.query(q).unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, H)
            scores = self.v(e).squeeze(-1)  # (B, T, S)
        scores = scores.float().masked_fill(pad.unsqueeze(1), float("-inf"))
        alpha = torch.softmax(scores, -1).to(memory.dtype)  # (B, T, S), zero on PAD
        context = torch.bmm(alpha, memory)  # (B, T, H)
        return context.squeeze(1) if one else context


__all__ = ["ATTENTIONS", "Attention"]
