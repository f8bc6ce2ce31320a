"""`eval_mode`: a model in eval mode (dropout off) for a block, then back in the mode it was in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Scoring, sampling and embedding run in eval mode; a model in training stays in training after,
    even when the block raises (a training-time sample must not leave dropout off)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


__all__ = ["eval_mode"]
