"""What a trained model is used for, beyond scoring and sampling text.

- `search`: split a corpus into passages, embed them once into an index cached next to the
  checkpoint (`SearchIndex`), and find the passages nearest a query (`src/search.py`).
- `rank`: order candidate continuations by log-probability (`src/rank.py`).
- `tasks`: the measurements of docs/applications.md: next-passage retrieval and cloze task builders,
  a BM25 baseline, a unigram baseline (`scripts/applications.py`).

The model-facing parts are `LanguageModel.embed` and `LanguageModel.rank` (src/rnnlm/lm.py); this
package only needs those two methods, so any model behind `LanguageModel` works here unchanged.
"""

from rnnlm.applications.search import Hit, Passage, SearchIndex, read_passages, split_passages

__all__ = ["Hit", "Passage", "SearchIndex", "read_passages", "split_passages"]
