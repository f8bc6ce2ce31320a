"""`model_budget=N`: size the model to N parameters, so that different cells compare at equal size.

The width that scales is `hidden_dim` for a recurrent model (and `embedding_dim` with it when the
decoder is tied to the embedding), `embedding_dim` for the Transformer. The width is the multiple of
8 (the matrix kernels' preference) and of the heads, if any, whose count is nearest N; where none is
within 5% (small models, where 8 is a coarse step), any multiple of the heads; a count still more than
5% away (the depth or the vocabulary alone takes more) is refused. The models are built on the meta
device: no memory, no time.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnlm.errors import UserError
from rnnlm.inference.checkpoint import build_from_checkpoint
from rnnlm.models import RNNLM, TransformerLM, num_parameters

TOLERANCE = 0.05
CLASSES = {"rnnlm.models.RNNLM": RNNLM, "rnnlm.models.TransformerLM": TransformerLM}


def _sized(model: dict[str, Any], width: int) -> dict[str, Any]:
    model = dict(model)
    if model.get("_target_") == "rnnlm.models.TransformerLM":
        model["embedding_dim"] = width
    else:
        model["hidden_dim"] = width
        if model.get("tie_weights") and not model.get("last_hidden_dim"):
            model["embedding_dim"] = width
    return model


def _count(model: dict[str, Any], vocab_size: int) -> int:
    with torch.device("meta"):
        return num_parameters(
            build_from_checkpoint(model, CLASSES, "config", "model", vocab_size=vocab_size)
        )


def _nearest(model: dict[str, Any], vocab_size: int, budget: int, step: int) -> tuple[int, int]:
    """The multiple of `step` whose count is nearest `budget` (counts grow with the width), and it."""
    lo, hi = 1, 4096 // step
    while lo < hi:  # the smallest width whose count reaches the budget
        mid = (lo + hi) // 2
        if _count(_sized(model, mid * step), vocab_size) < budget:
            lo = mid + 1
        else:
            hi = mid
    counts = {w * step: _count(_sized(model, w * step), vocab_size) for w in (lo - 1, lo) if w >= 1}
    width = min(counts, key=lambda w: abs(counts[w] - budget))
    return width, counts[width]


def fit_budget(model: dict[str, Any], vocab_size: int, budget: int) -> tuple[dict[str, Any], int]:
    """`model` (a plain config dict) at the width whose parameter count is nearest `budget`, and it."""
    heads = int(model.get("num_heads") or model.get("heads") or 1)  # the width's divisor, if any
    width, count = _nearest(model, vocab_size, budget, math.lcm(8, heads))
    if abs(count - budget) > TOLERANCE * budget:  # small models: any width the heads divide
        width, count = _nearest(model, vocab_size, budget, heads)
    if abs(count - budget) > TOLERANCE * budget:
        raise UserError(
            f"model_budget={budget}: the nearest width gives {count:,} parameters, more than 5% away "
            "(the depth or the vocabulary alone takes more, or widths up to 4096 give fewer): change "
            "model_budget or model.num_layers"
        )
    return _sized(model, width), count


__all__ = ["fit_budget"]
