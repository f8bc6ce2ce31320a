"""What a trained model is used for, beyond scoring and sampling text.

- `embedding`: one unit vector per text, pooled over the model's last-layer outputs (`embed`).
- `rank`: order candidate continuations by log-probability (`rank_continuations`, `src/rank.py`).
- `search`: split a corpus into passages, embed them once into an index cached next to the
  checkpoint (`SearchIndex`), and find the passages nearest a query (`src/search.py`).
- `tasks`: the measurements of docs/applications.md: next-passage retrieval and cloze task builders,
  a BM25 baseline, a unigram baseline (`scripts/applications.py`).

Everything here takes a `LanguageModel` (rnnlm.inference), so any model behind it works unchanged.
"""

from __future__ import annotations

from rnnlm.lazy import lazy_getattr

_WHERE = {
    "POOLINGS": "rnnlm.applications.embedding",
    "embed": "rnnlm.applications.embedding",
    "Ranked": "rnnlm.applications.rank",
    "rank_continuations": "rnnlm.applications.rank",
    **{
        name: "rnnlm.applications.search"
        for name in ("Hit", "Passage", "SearchIndex", "read_passages", "split_passages")
    },
}

__getattr__ = lazy_getattr(__name__, _WHERE)

__all__ = sorted(_WHERE)
