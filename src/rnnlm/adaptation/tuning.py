"""Scoring a loaded model with test-time adaptation, and choosing its settings on held-out text.

The continuous cache (cache.py) and dynamic evaluation (dynamic.py) read a token stream laid out as in
training (`batch_size` contiguous columns read in windows of `bptt`, the hidden state carried across
windows); `src/eval.py` tunes them on the validation split and scores the test split with the best.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rnnlm.adaptation.cache import ContinuousCache, mix
from rnnlm.adaptation.dynamic import dynamic_nll
from rnnlm.data.layout import windows
from rnnlm.errors import UserError
from rnnlm.inference.lm import LanguageModel
from rnnlm.models.modes import eval_mode


@torch.no_grad()
def cache_inputs(
    lm: LanguageModel, ids: torch.Tensor, batch_size: int, bptt: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(model log-probs of the targets (B, T), last-layer outputs (B, T, H), targets (B, T)) of each
    window of a stream laid out as in `LanguageModel.evaluate_stream`: what the continuous cache reads."""
    if not hasattr(lm.model, "target_log_probs"):
        raise UserError(
            f"the continuous cache reads a recurrent model's hidden states; this checkpoint holds a "
            f"{type(lm.model).__name__}: score it without cache.window"
        )
    data = windows(ids, batch_size, bptt)
    hidden, out = None, []
    with eval_mode(lm.model):
        for i in range(len(data)):
            x, y = (t.to(lm.device) for t in data[i])  # (B, T)
            logp, h, hidden = lm.model.target_log_probs(x, y, hidden)
            out.append((logp, h, y))
    return out


@torch.no_grad()
def evaluate_stream_cached(
    lm: LanguageModel, ids: torch.Tensor, batch_size: int, bptt: int, cache: ContinuousCache
) -> tuple[float, float, int]:
    """(summed cross-entropy with the continuous cache, the same without it, tokens scored)."""
    cache.reset()
    nll, nll_model, count = 0.0, 0.0, 0
    for logp, h, y in cache_inputs(lm, ids, batch_size, bptt):
        nll -= float(cache.log_prob(h, logp, y).sum(dtype=torch.float64))
        nll_model -= float(logp.sum(dtype=torch.float64))
        count += y.numel()
    return nll, nll_model, count


@torch.no_grad()
def tune_cache(
    lm: LanguageModel,
    ids: torch.Tensor,
    batch_size: int,
    bptt: int,
    window: int,
    thetas: Sequence[float],
    weights: Sequence[float],
) -> tuple[float, float, dict[tuple[float, float], float]]:
    """Grid search of the cache's theta and weight (lambda) on a stream: (best theta, best weight,
    mean loss of every pair). The model runs once; each theta is one pass of the cache."""
    inputs = cache_inputs(lm, ids, batch_size, bptt)
    count = sum(y.numel() for _, _, y in inputs)
    losses: dict[tuple[float, float], float] = {}
    for theta in thetas:
        cache = ContinuousCache(window, theta, 0.0)
        parts = [(logp, *cache.probs(h, y)) for logp, h, y in inputs]
        for lam in weights:
            nll = -sum(float(mix(lp, p, has, lam).sum(dtype=torch.float64)) for lp, p, has in parts)
            losses[(theta, lam)] = nll / count
    theta, lam = min(losses, key=losses.get)
    return theta, lam, losses


def evaluate_stream_dynamic(
    lm: LanguageModel, ids: torch.Tensor, batch_size: int, bptt: int, lr: float, decay: float = 0.0
) -> tuple[float, int]:
    """`evaluate_stream` with dynamic evaluation (dynamic.py): one SGD step on each window
    after it is scored. The model's weights are the same afterwards."""
    data = windows(ids, batch_size, bptt)
    batches = (tuple(t.to(lm.device) for t in data[i]) for i in range(len(data)))
    return dynamic_nll(lm.model, batches, lr, decay)


def tune_dynamic(
    lm: LanguageModel,
    ids: torch.Tensor,
    batch_size: int,
    bptt: int,
    lrs: Sequence[float],
    decays: Sequence[float],
) -> tuple[float, float, dict[tuple[float, float], float]]:
    """Grid search of dynamic evaluation's lr and decay on a stream: (best lr, best decay, mean loss
    of every pair; a diverging pair counts as infinite loss). One pass with gradients per pair."""
    losses: dict[tuple[float, float], float] = {}
    for lr in lrs:
        for decay in decays:
            nll, count = evaluate_stream_dynamic(lm, ids, batch_size, bptt, lr, decay)
            loss = nll / count
            losses[(lr, decay)] = loss if math.isfinite(loss) else math.inf
    lr, decay = min(losses, key=losses.get)
    return lr, decay, losses
