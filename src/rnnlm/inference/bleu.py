"""BLEU and chrF of a corpus of translations through `sacrebleu`, with a variable number of references.

A source sentence of Tatoeba often has several translations in its split; each of them is a reference
for that sentence. sacrebleu takes references as parallel streams (stream k holds every sentence's k-th
reference), so a sentence with fewer references than the most has `None` in the later streams, which
sacrebleu skips.
"""

from __future__ import annotations

from collections.abc import Sequence


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """[[refs of sentence 0], [refs of sentence 1], ...] -> sacrebleu's streams, padded with None."""
    width = max((len(r) for r in references), default=0)
    return [[r[k] if k < len(r) else None for r in references] for k in range(width)]


def corpus_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Corpus BLEU (sacrebleu's 13a tokenisation) and chrF (character 6-grams, beta 2) in 0-100."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} reference sets")
    if not hypotheses:
        return {"bleu": float("nan"), "chrf": float("nan")}
    streams = reference_streams(references)
    hyps = list(hypotheses)
    return {
        "bleu": float(BLEU().corpus_score(hyps, streams).score),
        "chrf": float(CHRF().corpus_score(hyps, streams).score),
    }
