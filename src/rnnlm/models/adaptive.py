"""The adaptive softmax with tied embeddings: the speed of the adaptive softmax (Grave et al. 2017) and
the tied input/output vectors (Press & Wolf 2017; Inan et al. 2017) that help most on small corpora.

torch's `nn.AdaptiveLogSoftmaxWithLoss` factorises log p(w) = log p(c(w)) + log p(w | c(w)): a head
softmax over the `cutoffs[0]` most frequent words plus one entry per tail cluster, and within each tail
cluster a softmax over its own words. Training computes a tail cluster's scores only for the rows whose
target is in that cluster, which is where the speed comes from: the head holds most of the tokens of
natural text (about 83% of wikitext-2-mini's at 2,000 words).

`AdaptiveSoftmax` is that module with float32 scores under autocast; `TiedAdaptiveSoftmax` is that
module with its linear maps replaced by slices of the embedding matrix E (V, D), so the output vector
of every word is its input vector, as in a tied full softmax:

    head:           scores = h @ [E[:c0]; C]^T + b_head      C: one learned (D,) vector per tail cluster
    tail cluster i: scores = h @ E[lo_i:hi_i]^T + b_i        no projection: within its cluster a word
                                                             scores exactly as under the tied full softmax

torch's own forward, `log_prob` and `predict` run unchanged on top (they only call `head(h)` and
`tail[i](h)`). Each call first splits E into its clusters' row blocks once (`torch.split`): the
backward then writes E's gradient in one (V, D) pass, where a slice per cluster would zero-fill a
(V, D) gradient for each slice and add them up (docs/how-it-works.md, section 7).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TiedRows(nn.Module):
    """x (N, D) -> x @ [weight[lo:hi]; extra]^T + bias (N, hi - lo + extra_rows). `weight` is shared
    (the embedding's), `extra` and `bias` are this module's own."""

    def __init__(self, weight: nn.Parameter, lo: int, hi: int, extra_rows: int = 0) -> None:
        super().__init__()
        self.weight = weight  # registered here too, like the tied full softmax's decoder.weight
        self.lo, self.hi = lo, hi
        self.extra = nn.Parameter(torch.empty(extra_rows, weight.size(1))) if extra_rows else None
        self.bias = nn.Parameter(torch.empty(hi - lo + extra_rows))
        self.rows: Tensor | None = None  # weight[lo:hi] from the owner's split, during its call
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.extra is not None:
            nn.init.uniform_(self.extra, -0.1, 0.1)  # the embedding's own init (RNNLM)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        w = self.rows if self.rows is not None else self.weight[self.lo : self.hi]
        if self.extra is not None:
            w = torch.cat([w, self.extra])
        return F.linear(x, w, self.bias)


def _as_float32(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    return output.float()


def float32_scores(softmax: nn.AdaptiveLogSoftmaxWithLoss) -> None:
    """Make the head's and each tail cluster's scores leave autocast in float32: the matrix multiplies
    run in bf16 under autocast, the log-softmax of each cluster and the log-probabilities in float32
    (torch's own would run both in bf16, about 0.03 nats off at a log-probability of -10). Outside
    autocast the cast is a no-op."""
    for scores in [softmax.head, *(cluster[-1] for cluster in softmax.tail)]:
        scores.register_forward_hook(_as_float32)


class AdaptiveSoftmax(nn.AdaptiveLogSoftmaxWithLoss):
    """torch's adaptive softmax with float32 scores under autocast (`float32_scores`); the parameters
    and their names are torch's."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        float32_scores(self)


class TiedAdaptiveSoftmax(nn.AdaptiveLogSoftmaxWithLoss):
    """Adaptive softmax over `embedding`'s vocabulary whose word vectors are the embedding's rows.

    Ids must be sorted by frequency, most frequent first (rnnlm's word tokenizer does this)."""

    def __init__(self, embedding: nn.Embedding, cutoffs: Sequence[int]) -> None:
        vocab_size, dim = embedding.weight.shape
        super().__init__(dim, vocab_size, list(cutoffs), div_value=1.0)
        weight = embedding.weight
        self.head = TiedRows(weight, 0, self.shortlist_size, extra_rows=self.n_clusters)
        self.tail = nn.ModuleList(
            nn.Sequential(nn.Identity(), TiedRows(weight, lo, hi))
            for lo, hi in zip(self.cutoffs[:-1], self.cutoffs[1:], strict=True)
        )
        float32_scores(self)

    def reset_parameters(self) -> None:
        self.head.reset_parameters()
        for _, rows in self.tail:
            rows.reset_parameters()

    def _clusters(self) -> list[TiedRows]:
        return [self.head, *(rows for _, rows in self.tail)]

    @contextlib.contextmanager
    def _split_rows(self) -> Iterator[None]:
        """Hand each cluster its block of the embedding's rows, split off in one operation."""
        clusters = self._clusters()
        sizes = [c.hi - c.lo for c in clusters]
        for cluster, rows in zip(clusters, self.head.weight.split(sizes), strict=True):
            cluster.rows = rows
        try:
            yield
        finally:
            for cluster in clusters:
                cluster.rows = None

    def forward(self, input_: Tensor, target_: Tensor):  # type: ignore[override]
        with self._split_rows():
            return super().forward(input_, target_)

    def log_prob(self, input: Tensor) -> Tensor:
        with self._split_rows():
            return super().log_prob(input)

    def predict(self, input: Tensor) -> Tensor:
        with self._split_rows():
            return super().predict(input)


__all__ = ["AdaptiveSoftmax", "TiedAdaptiveSoftmax", "TiedRows"]
