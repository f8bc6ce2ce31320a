"""Word-overlap search: Okapi BM25 over passages (the `bm25s` library), and reciprocal rank fusion,
which merges BM25's ranking with the embeddings' (`method=hybrid`).

BM25 (Robertson et al.), with Lucene's idf:
    score(q, d) = sum over query terms t of idf(t) * tf(t, d) * (k1 + 1) /
                  (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),   idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))
Terms are lower-cased words (`terms`), no stemming and no stop list, so a name or a repeated
question counts, which is what finds the next speech of a play (docs/applications.md).

Reciprocal rank fusion (Cormack et al. 2009): score(d) = sum over methods of 1 / (k + rank(d)),
rank 1-based; k = 60 as in the paper. It needs no calibration between cosine and BM25 scores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rnnlm.errors import UserError

TERM = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
RRF_K = 60


def terms(text: str) -> list[str]:
    """The lower-cased word terms of `text` ("o'er" and "d's" stay one term)."""
    return TERM.findall(text.lower())


class BM25:
    """BM25 over a fixed collection of documents: `scores(query)` gives one score per document."""

    def __init__(self, documents: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        try:
            import bm25s
        except ImportError:
            raise UserError("BM25 search needs bm25s: pip install 'rnnlm[search]'") from None
        self.size, self.k1 = len(documents), k1
        self.index = bm25s.BM25(k1=k1, b=b, method="lucene")
        # Documents without a term get bm25s's empty token, so every document keeps its row.
        self.index.index([terms(d) for d in documents], show_progress=False)
        self.known = set(self.index.vocab_dict)

    def scores(self, query: str) -> np.ndarray:
        """(documents,) float64: 0 for a document sharing no term with the query."""
        words = [t for t in terms(query) if t in self.known]
        if not words:
            return np.zeros(self.size)
        # bm25s scores as Lucene does, without the constant factor (k1 + 1) of the formula above
        return self.index.get_scores(words).astype(np.float64) * (self.k1 + 1)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each entry, best (highest) first; ties keep their order."""
    order = np.argsort(-scores, kind="stable")
    out = np.empty(len(scores), dtype=np.int64)
    out[order] = np.arange(1, len(scores) + 1)
    return out


def reciprocal_rank_fusion(*scores: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """sum over the methods' scores of 1 / (k + rank): one fused score per document."""
    return sum(1.0 / (k + ranks(np.asarray(s, dtype=np.float64))) for s in scores)
