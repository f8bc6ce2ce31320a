"""Corpora, tokenizers, the token-stream layout and the DataModules (language models, translation
pairs). Never imports models.

Names are imported on first use, so the light parts (sources, tokenizers) can be used before torch and
Lightning are loaded (the config check at start-up does).
"""

from __future__ import annotations

from rnnlm.lazy import lazy_getattr

_WHERE = {
    "LMDataModule": "rnnlm.data.datamodule",
    "PairDataModule": "rnnlm.data.pair_datamodule",
    "PairTokenizer": "rnnlm.data.pair_tokenizer",
    "SideTokenizer": "rnnlm.data.pair_tokenizer",
    "Windows": "rnnlm.data.layout",
    "batchify": "rnnlm.data.layout",
    "shard": "rnnlm.data.layout",
    "windows": "rnnlm.data.layout",
    "Corpus": "rnnlm.data.sources",
    "CorpusError": "rnnlm.data.sources",
    "load_corpus": "rnnlm.data.sources",
    "CharTokenizer": "rnnlm.data.tokenizers",
    "Tokenizer": "rnnlm.data.tokenizers",
    "WordTokenizer": "rnnlm.data.tokenizers",
    "tokenizer_from_dict": "rnnlm.data.tokenizers",
}


__getattr__ = lazy_getattr(__name__, _WHERE)


__all__ = sorted(_WHERE)
