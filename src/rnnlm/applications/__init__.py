"""What a trained model is used for, beyond scoring and sampling text.

- `embed`: one unit vector per text, pooled over the model's last-layer outputs (`embed`).
- `rank`: order candidate continuations by log-probability (`rank_continuations`, `src/rank.py`).
- `search`: split a corpus into passages, embed them once into an index cached next to the
  checkpoint (`SearchIndex`), and find the passages nearest a query (`src/search.py`).
- `tasks`: the measurements of docs/applications.md: next-passage retrieval and cloze task builders,
  a BM25 baseline, a unigram baseline (`scripts/applications.py`).

Everything here takes a `LanguageModel` (rnnlm.inference), so any model behind it works unchanged.
"""

from rnnlm.applications.embed import POOLINGS, embed
from rnnlm.applications.rank import Ranked, rank_continuations
from rnnlm.applications.search import Hit, Passage, SearchIndex, read_passages, split_passages

__all__ = [
    "POOLINGS",
    "Hit",
    "Passage",
    "Ranked",
    "SearchIndex",
    "embed",
    "rank_continuations",
    "read_passages",
    "split_passages",
]
