"""Corpus-level loss: summed cross-entropy and token count, summed across batches and DDP ranks.

Perplexity over a split is exp(total cross-entropy / total tokens); averaging per-batch perplexities
(or computing them after a softmax, as torchmetrics' Perplexity does) gives a different, wrong number.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

LN2 = math.log(2.0)


class TokenMeanLoss(Metric):
    """Mean cross-entropy per token over everything seen since the last reset (nats)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, nll_sum: Tensor, num_tokens: int) -> None:
        self.nll += nll_sum.detach().to(torch.float64)
        self.tokens += num_tokens

    def compute(self) -> Tensor:
        return self.nll / self.tokens.clamp(min=1)


def perplexity(mean_loss: float | Tensor) -> float:
    """exp(mean loss in nats), capped at exp(700), near float64's limit (no OverflowError)."""
    return math.exp(min(float(mean_loss), 700.0))


def bits_per_char(mean_loss_nats: float | Tensor) -> float:
    """For character tokens: nats per character -> bits per character."""
    return float(mean_loss_nats) / LN2
