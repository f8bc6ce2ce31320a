"""Corpora, tokenizers, the token-stream layout and the DataModule. Never imports models."""

from rnnlm.data.datamodule import LMDataModule
from rnnlm.data.layout import Windows, batchify, shard, windows
from rnnlm.data.sources import Corpus, CorpusError, load_corpus
from rnnlm.data.tokenizers import CharTokenizer, Tokenizer, WordTokenizer, tokenizer_from_dict

__all__ = [
    "CharTokenizer",
    "Corpus",
    "CorpusError",
    "LMDataModule",
    "Tokenizer",
    "Windows",
    "WordTokenizer",
    "batchify",
    "load_corpus",
    "shard",
    "tokenizer_from_dict",
    "windows",
]
