"""Decoding a translation model: greedy and beam search, batched over sentences, through the models'
`start` / `step` / `reorder` (seq2seq_base.py).

Beam search keeps, per sentence, the `beam_size` best prefixes by summed log-probability. At each
step every live prefix is extended by every token; of the candidates (sentence-wise top 2k, so k that
do not end are always among them) the ones ending in EOS within the k best are set aside as finished,
scored with the GNMT length penalty (Wu et al. 2016)

    score(y) = log p(y | x) / lp(|y|),   lp(n) = ((5 + n) / 6) ** alpha      (|y| counts the EOS)

and the k best that do not end become the next beams. A sentence is done when it has k finished
hypotheses, when no live beam can still beat its best finished one (a live score only falls, and its
best possible normalisation is at the length limit), or at its length limit (the live beams are
finished there as they are). Done sentences leave the batch (`reorder` drops their rows), so a batch
costs what its live sentences cost. With beam_size=1 this is greedy decoding.

Length limit per sentence: min(max_len, 2 * src_len + 10) target tokens (EOS not counted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from rnnlm.models.seq2seq_base import BOS, EOS, PAD

DEFAULT_MAX_LEN = 256


def length_limits(src_len: Tensor, max_len: int) -> list[int]:
    """The most target tokens each sentence may get: min(max_len, 2 * src_len + 10)."""
    if max_len < 1:
        raise ValueError(f"max_len={max_len} must be >= 1 (target tokens per sentence)")
    return [min(max_len, 2 * int(n) + 10) for n in src_len.tolist()]


def gnmt_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(n) = ((5 + n) / 6) ** alpha; alpha=0 ranks by plain log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


def _writable(logp: Tensor) -> Tensor:
    """A step's log-probabilities with PAD and BOS ruled out: they never belong in an output."""
    logp[:, PAD] = float("-inf")
    logp[:, BOS] = float("-inf")
    return logp


@contextlib.contextmanager
def _decoding(model: nn.Module) -> Iterator[None]:
    """Evaluation mode (no dropout) and no autograd for the search, the model's mode restored after."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def greedy(
    model: nn.Module, src: Tensor, src_len: Tensor, max_len: int = DEFAULT_MAX_LEN
) -> list[list[int]]:
    """The most probable next token at every step; target ids per sentence, without BOS/EOS."""
    limits = length_limits(src_len, max_len)
    out: list[list[int]] = [[] for _ in limits]
    with _decoding(model):
        state = model.start(src, src_len)
        prev = torch.full((src.size(0),), BOS, dtype=torch.long, device=src.device)
        alive = list(range(src.size(0)))  # the sentence of each row
        for _ in range(max(limits, default=0)):
            logp, state = model.step(state, prev)
            token = _writable(logp).argmax(-1)  # (N,)
            keep = []
            for row, (i, w) in enumerate(zip(alive, token.tolist(), strict=True)):
                if w != EOS:
                    out[i].append(w)
                    if len(out[i]) < limits[i]:
                        keep.append(row)
            if len(keep) < len(alive):  # finished rows leave the batch
                if not keep:
                    break
                rows = torch.tensor(keep, device=src.device)
                state, token = model.reorder(state, rows), token[rows]
                alive = [alive[r] for r in keep]
            prev = token
    return out


def beam_search(
    model: nn.Module,
    src: Tensor,
    src_len: Tensor,
    beam_size: int = 5,
    length_penalty: float = 0.6,
    max_len: int = DEFAULT_MAX_LEN,
) -> list[list[int]]:
    """The best hypothesis of a beam of `beam_size` per sentence (see the module docstring)."""
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size={beam_size}: beam_size must be >= 1 (1 is greedy decoding)")
    if length_penalty < 0:
        raise ValueError(
            f"length_penalty={length_penalty} must be >= 0 (0: no length normalisation)"
        )
    k, n, dev = beam_size, src.size(0), src.device
    limits = length_limits(src_len, max_len)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    with _decoding(model):
        state = model.reorder(
            model.start(src, src_len), torch.arange(n, device=dev).repeat_interleave(k)
        )
        scores = torch.full((n, k), float("-inf"), device=dev)
        scores[:, 0] = 0.0  # one live beam per sentence at the start: the others would repeat it
        hist = torch.zeros(n, k, 0, dtype=torch.long, device=dev)  # (A, k, t) tokens of each beam
        prev = torch.full((n * k,), BOS, dtype=torch.long, device=dev)
        alive = list(range(n))  # the sentence of each group of k rows
        for t in range(max(limits, default=0)):
            logp, state = model.step(state, prev)  # (A*k, V)
            a, v = len(alive), logp.size(-1)
            cand = (scores.unsqueeze(2) + _writable(logp).view(a, k, v)).view(a, k * v)
            top, idx = cand.topk(min(2 * k, k * v), 1)  # (A, 2k) best first
            beam, token = idx // v, idx % v
            eos = token == EOS
            for r, c in (eos[:, :k] & top[:, :k].isfinite()).nonzero().tolist():
                words = hist[r, beam[r, c]].tolist()
                finished[alive[r]].append(
                    (top[r, c].item() / gnmt_penalty(t + 1, length_penalty), words)
                )
            # the k best candidates that do not end: a stable sort moves the EOS ones behind them
            cont = torch.sort(eos.to(torch.int8), dim=1, stable=True).indices[:, :k]
            scores = top.gather(1, cont).masked_fill(eos.gather(1, cont), float("-inf"))
            beam, token = beam.gather(1, cont), token.gather(1, cont)  # (A, k)
            hist = torch.cat(
                [hist.gather(1, beam.unsqueeze(2).expand(-1, -1, t)), token.unsqueeze(2)], 2
            )
            keep = []
            for r, i in enumerate(alive):
                best_live = scores[r].max().item()
                if t + 1 >= limits[i]:  # the live beams end here as they are
                    for j in range(k):
                        if scores[r, j].item() > float("-inf"):
                            finished[i].append(
                                (
                                    scores[r, j].item() / gnmt_penalty(t + 1, length_penalty),
                                    hist[r, j].tolist(),
                                )
                            )
                elif len(finished[i]) < k and not (
                    finished[i]
                    and max(f[0] for f in finished[i])
                    >= best_live / gnmt_penalty(limits[i], length_penalty)
                ):
                    keep.append(r)
            if not keep:
                break
            rows = torch.tensor(keep, device=dev)
            # row of beam j of kept sentence r: r * k + (the beam it extends)
            state = model.reorder(state, (rows.unsqueeze(1) * k + beam[rows]).flatten())
            scores, hist, alive = scores[rows], hist[rows], [alive[r] for r in keep]
            prev = token[rows].flatten()
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


__all__ = ["DEFAULT_MAX_LEN", "beam_search", "greedy", "length_limits", "gnmt_penalty"]
