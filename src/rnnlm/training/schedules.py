"""Learning-rate schedules of the published recipes that torch.optim.lr_scheduler lacks as one class."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

from rnnlm import schema


class DelayedExponentialLR(LambdaLR):
    """Keep the learning rate for `delay` epochs, then multiply it by `gamma` after every epoch
    (Zaremba et al. 2014: epoch e, counted from 0, runs at lr * gamma ** max(e + 1 - delay, 0))."""

    def __init__(self, optimizer: torch.optim.Optimizer, gamma: float, delay: int = 0) -> None:
        schema.check("scheduler", gamma=gamma, delay=delay)
        self.gamma, self.delay = gamma, delay
        super().__init__(optimizer, lambda epoch: gamma ** max(epoch + 1 - delay, 0))


__all__ = ["DelayedExponentialLR"]
