"""The `src/rank.py` command: candidate continuations of a context, most likely first."""

from __future__ import annotations

import json
from collections.abc import Sequence

from omegaconf import DictConfig, ListConfig

from rnnlm.errors import UserError
from rnnlm.lm import LanguageModel, Ranked

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
    from rnnlm.evaluate import resolve_device

    candidates = parse_candidates(cfg.candidates)
    if cfg.sort_by not in ("total", "mean"):
        raise UserError(f"sort_by={cfg.sort_by!r} is not known; choose total or mean")
    lm = LanguageModel.load(cfg.ckpt_path, device=resolve_device(cfg.device))
    rows = lm.rank(str(cfg.context or ""), candidates, normalize=cfg.sort_by == "mean")
    print(format_ranking(rows), flush=True)
    return rows
