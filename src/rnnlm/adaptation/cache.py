"""The continuous cache (Grave, Joulin and Usunier 2017, "Improving Neural Language Models with a
Continuous Cache", https://arxiv.org/abs/1612.04426): a test-time memory of the model's own recent states.

Each past position i of the text being scored is remembered as a key, the last layer's output h_i, and
a value, the token x_{i+1} that followed it. The next token's probability mixes the model's softmax with
a distribution over the remembered tokens, weighted by how close their states are to the present one:

    p(w | h_t) = (1 - lam) * p_model(w | h_t) + lam * p_cache(w | h_t)
    p_cache(w | h_t) = sum over the last `window` positions i < t with x_{i+1} = w of
                       softmax_i(theta * h_t . h_i)

Nothing is trained: theta, lam and the window are chosen on held-out text. Text that repeats its own
rare words (names, topics: most of WikiText) gains most. Scoring needs only the targets' probabilities,
so the cache distribution over the whole vocabulary is never built.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnlm import schema


class ContinuousCache:
    """The memory of one stream laid out in B columns (each column remembers its own past).

    Call `probs` (or `log_prob`) on consecutive windows of the stream, in order; `reset` starts over.
    """

    def __init__(self, window: int, theta: float, lam: float) -> None:
        if window < 1:
            raise ValueError(f"cache.window={window} must be >= 1 (positions remembered)")
        schema.check("cache", theta=theta, weight=lam)
        self.window, self.theta, self.lam = window, theta, lam
        self.reset()

    def reset(self) -> None:
        self.keys: Tensor | None = None  # (B, M, H), M <= window: the remembered states
        self.values: Tensor | None = None  # (B, M): the token that followed each of them

    def probs(self, h: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """p_cache(target_t | h_t) for a window, and whether the cache held anything for each t.

        h (B, T, H): the last layer's outputs that predict target (B, T). Both then join the memory.
        Returns (p (B, T), has_memory (B, T) bool).
        """
        b, t, _ = h.shape
        h = h.detach().float()
        keys = h if self.keys is None else torch.cat([self.keys, h], 1)  # (B, M + T, H)
        values = target if self.values is None else torch.cat([self.values, target], 1)
        m = keys.size(1) - t  # positions remembered before this window
        # Query t sits at position m + t; it may read positions j with m + t - window <= j < m + t.
        j = torch.arange(m + t, device=h.device)
        now = m + torch.arange(t, device=h.device).unsqueeze(1)  # (T, 1)
        visible = (j < now) & (j >= now - self.window)  # (T, M + T)
        scores = torch.bmm(h, keys.transpose(1, 2)).mul_(self.theta)  # (B, T, M + T)
        scores.masked_fill_(~visible, -math.inf)
        has_memory = visible.any(1).expand(b, t)  # (B, T): False only at a column's first token
        weights = torch.softmax(scores, -1).nan_to_num_(0.0)  # rows with nothing visible: all 0
        hit = values.unsqueeze(1) == target.unsqueeze(2)  # (B, T, M + T): followed by the target?
        p = (weights * hit).sum(-1)
        self.keys, self.values = keys[:, -self.window :], values[:, -self.window :]
        return p, has_memory

    def log_prob(self, h: Tensor, logp_model: Tensor, target: Tensor) -> Tensor:
        """log p(target_t | h_t) under the mixture (B, T), given the model's own log-probabilities."""
        p, has_memory = self.probs(h, target)
        return mix(logp_model, p, has_memory, self.lam)


def mix(logp_model: Tensor, p_cache: Tensor, has_memory: Tensor, lam: float) -> Tensor:
    """log((1 - lam) p_model + lam p_cache), in log space; the model alone where the cache was empty."""
    logp_model = logp_model.float()
    if lam == 0.0:
        return logp_model
    log_cache = torch.log(lam * p_cache)  # -inf where the target is not in the cache
    mixed = log_cache if lam == 1.0 else torch.logaddexp(logp_model + math.log1p(-lam), log_cache)
    return torch.where(has_memory, mixed, logp_model)


__all__ = ["ContinuousCache", "mix"]
