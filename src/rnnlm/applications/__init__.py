"""What a trained model is used for, beyond scoring and sampling text.

- `embedding`: one unit vector per text, pooled over the model's last-layer outputs (`embed`).
- `rank`: order candidate continuations by log-probability (`rank_continuations`, `src/rank.py`).
- `passages`: a corpus split into passages (lines or paragraphs) with where each starts.
- `search`: the passages in an index (`SearchIndex`): embedded once and cached next to the
  checkpoint, and/or a BM25 index; the passages nearest a query (`src/search.py method=...`).
- `lexical`: BM25 (bm25s) and reciprocal rank fusion.
- `tasks`: the measurements of docs/applications.md: next-passage retrieval and cloze task builders,
  a unigram baseline (`scripts/applications.py`).

Everything here takes a `LanguageModel` (rnnlm.inference), so any model behind it works unchanged.
"""

from __future__ import annotations

from rnnlm.lazy import lazy_getattr

_WHERE = {
    "POOLINGS": "rnnlm.applications.embedding",
    "embed": "rnnlm.applications.embedding",
    "Ranked": "rnnlm.applications.rank",
    "rank_continuations": "rnnlm.applications.rank",
    "Hit": "rnnlm.applications.search",
    "SearchIndex": "rnnlm.applications.search",
    **{
        name: "rnnlm.applications.passages"
        for name in ("Passage", "read_passages", "split_passages")
    },
}

__getattr__ = lazy_getattr(__name__, _WHERE)

__all__ = sorted(_WHERE)
