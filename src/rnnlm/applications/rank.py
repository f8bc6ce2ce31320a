"""Ranking candidate continuations of a context by their log-probability, and the `src/rank.py` command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, ListConfig

from rnnlm.errors import UserError
from rnnlm.inference.device import resolve_device
from rnnlm.inference.lm import LanguageModel
from rnnlm.models.modes import eval_mode


@dataclass(frozen=True)
class Ranked:
    """One candidate continuation scored by `rank_continuations` (log-probabilities in nats)."""

    rank: int  # 1 = most likely under the ordering asked for
    candidate: str
    logprob: float  # log p(candidate's tokens | context), summed over its tokens
    mean_logprob: float  # logprob / num_tokens: the length-normalised score
    num_tokens: int
    unknown: int  # tokens of the candidate outside the vocabulary (scored as <unk>)


@torch.no_grad()
def rank_continuations(
    lm: LanguageModel,
    context: str,
    candidates: Sequence[str],
    normalize: bool = False,
    max_batch_tokens: int = 8192,
) -> list[Ranked]:
    """Candidate continuations of `context`, most likely first.

    Each candidate is scored by log p(candidate | context), the sum of its tokens'
    log-probabilities (nats), and by that sum divided by its token count (`mean_logprob`).
    The order follows the total (`normalize=False`: the probability of the whole continuation,
    which favours short candidates) or the per-token mean (`normalize=True`). Ties keep the
    input order.

    The context is read from the start of a line, and each candidate is appended to it as
    running text: characters are appended as they are (put the space in the context or the
    candidate: `rank_continuations(lm, "To be or not to ", ["be", "go"])`); words are separated by whitespace.
    A candidate that ends with a line break is scored with its `<eos>` (word level).
    The context is read once; the candidates go through in batches of similar length, at most
    `max_batch_tokens` padded tokens each.
    """
    if isinstance(candidates, str) or not candidates:
        raise UserError("candidates must be a non-empty list of strings")
    ctx_ids = [lm.start_id, *lm.encode_text(context)[0]]
    cand_ids: list[list[int]] = []
    unknowns: list[int] = []
    for i, cand in enumerate(candidates):
        ids, unknown = lm.encode_text(str(cand))
        if not ids:
            raise UserError(f"candidate {i} ({cand!r}) has no tokens to score")
        cand_ids.append(ids)
        unknowns.append(unknown)
    with eval_mode(lm.model):
        totals = _total_logprobs(lm, ctx_ids, cand_ids, max_batch_tokens)
    rows = [
        (str(c), total, total / len(ids), len(ids), unk)
        for c, total, ids, unk in zip(candidates, totals, cand_ids, unknowns, strict=True)
    ]
    key = 2 if normalize else 1
    order = sorted(range(len(rows)), key=lambda i: -rows[i][key])  # stable: ties keep order
    return [Ranked(r + 1, *rows[i]) for r, i in enumerate(order)]


def _total_logprobs(
    lm: LanguageModel, ctx_ids: list[int], cand_ids: list[list[int]], max_batch_tokens: int
) -> list[float]:
    """log p(candidate | context) for each candidate: the context is read once, and every batch of
    candidates (similar lengths, at most `max_batch_tokens` padded tokens) continues its state."""
    device = lm.device
    logits, hidden = lm.model(torch.tensor([ctx_ids], device=device))
    first = logits[0, -1].float().log_softmax(-1)  # (V,) the distribution after the context
    totals = [0.0] * len(cand_ids)
    by_length = sorted(range(len(cand_ids)), key=lambda i: len(cand_ids[i]))
    start = 0
    while start < len(by_length):
        longest = len(cand_ids[by_length[start]])
        stop = start + 1
        while stop < len(by_length):  # grow the batch while it fits the token budget
            longest_next = len(cand_ids[by_length[stop]])
            if (stop - start + 1) * longest_next > max_batch_tokens:
                break
            longest, stop = longest_next, stop + 1
        idx = by_length[start:stop]
        start = stop
        lengths = torch.tensor([len(cand_ids[i]) for i in idx], device=device)
        y = torch.zeros(len(idx), longest, dtype=torch.long, device=device)
        for row, i in enumerate(idx):
            y[row, : len(cand_ids[i])] = torch.tensor(cand_ids[i])
        logp = first[y[:, :1]]  # (N, 1): each candidate's first token
        if longest > 1:
            out, _ = lm.model(y[:, :-1], repeat_hidden(hidden, len(idx)))  # (N, L-1, V)
            target = out.gather(-1, y[:, 1:, None]).squeeze(-1).float()
            rest = target - out.float().logsumexp(-1)  # log-softmax at the targets only
            logp = torch.cat([logp, rest], dim=1)  # (N, L)
        mask = torch.arange(longest, device=device)[None, :] < lengths[:, None]
        for i, total in zip(idx, (logp * mask).sum(1).tolist(), strict=True):
            totals[i] = total
    return totals


def repeat_hidden(hidden, n: int):  # noqa: ANN001, ANN201
    """A batch-1 hidden state repeated for n rows: every state tensor has the batch at dim 1 ((L, 1, H),
    an LSTM's (h, c) pair, a parallel cell's (1, 1, ...) tensors)."""
    if isinstance(hidden, tuple):
        return tuple(h.expand(h.size(0), n, *h.shape[2:]).contiguous() for h in hidden)
    return hidden.expand(hidden.size(0), n, *hidden.shape[2:]).contiguous()


EXAMPLE = """candidates='["to sleep", "to dream"]'"""


def parse_candidates(value: object) -> list[str]:
    """A list of candidate strings from Hydra (already a list) or from a JSON string."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(
                f"candidates={value!r} is not a list of strings: write {EXAMPLE}"
            ) from None
    if isinstance(value, ListConfig):
        value = list(value)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise UserError(f"candidates={value!r} is not a list of strings: write {EXAMPLE}")
    if not value:
        raise UserError(f"candidates is an empty list: give at least one, e.g. {EXAMPLE}")
    bad = [v for v in value if not isinstance(v, str | int | float) or isinstance(v, bool)]
    if bad:
        raise UserError(f"candidates holds non-strings {bad!r}: write {EXAMPLE}")
    return [str(v) for v in value]


def format_ranking(rows: list[Ranked]) -> str:
    width = max(len(repr(r.candidate)) for r in rows)
    head = f"{'rank':>4}  {'candidate':<{width}}  {'log p (nats)':>12}  {'per token':>9}  tokens"
    lines = [head]
    for r in rows:
        line = (
            f"{r.rank:>4}  {r.candidate!r:<{width}}  {r.logprob:>12.4f}  {r.mean_logprob:>9.4f}"
            f"  {r.num_tokens:>6}"
        )
        lines.append(line + (f"  ({r.unknown} unknown)" if r.unknown else ""))
    return "\n".join(lines)


def rank(cfg: DictConfig) -> list[Ranked]:
    """The `src/rank.py` command: load the checkpoint, rank, print the table."""
    candidates = parse_candidates(cfg.candidates)
    if cfg.sort_by not in ("total", "mean"):
        raise UserError(f"sort_by={cfg.sort_by!r} is not known; choose total or mean")
    lm = LanguageModel.load(cfg.ckpt_path, device=resolve_device(cfg.device))
    rows = rank_continuations(
        lm, str(cfg.context or ""), candidates, normalize=cfg.sort_by == "mean"
    )
    print(format_ranking(rows), flush=True)
    return rows
