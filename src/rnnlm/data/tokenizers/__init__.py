"""Tokenizers: text <-> token ids, with a vocabulary built from the training split only.

Each tokenizer serialises to a plain dict (`to_dict` / `tokenizer_from_dict`) that is stored inside
every checkpoint, so a checkpoint alone is enough to evaluate or generate.

Corpora of hundreds of MB are read in pieces (`train_tokenizer` takes an iterable of text pieces) and
encoded with NumPy (`encode_array`): characters through a code-point lookup table, words through one C-level
dictionary lookup each. Nothing holds a Python object per token of the whole corpus.

Kinds: `char` (characters), `word` (whitespace-split words), `byte` (the 256 byte values of the UTF-8
text, for enwik8), `bpe` (byte-level BPE trained with Hugging Face `tokenizers`, `data.vocab_size` ids).

- `base`: `Tokenizer`, `UNK`, `EOS`; `text`: `CharTokenizer`, `WordTokenizer`; `byte_level`: `ByteTokenizer`,
  `BPETokenizer`. This module maps a kind to its class (`TOKENIZERS`) and builds or restores one.
"""

from __future__ import annotations

from collections.abc import Iterable

from rnnlm.data.tokenizers.base import CHAR_LEVEL, EOS, MISSING, UNK, Tokenizer
from rnnlm.data.tokenizers.byte_level import BPETokenizer, ByteTokenizer
from rnnlm.data.tokenizers.text import CharTokenizer, WordTokenizer
from rnnlm.schema import TOKENIZER_KINDS

TOKENIZERS: dict[str, type[Tokenizer]] = {
    cls.kind: cls for cls in (CharTokenizer, WordTokenizer, ByteTokenizer, BPETokenizer)
}
# The config check refuses other kinds before a run from schema's list (importing this package would
# load NumPy into every refused command): the two must name the same kinds.
if tuple(TOKENIZERS) != TOKENIZER_KINDS:
    raise ImportError(
        f"schema.TOKENIZER_KINDS {TOKENIZER_KINDS} != the tokenizers {tuple(TOKENIZERS)}"
    )


def tokenizer_from_dict(state: dict) -> Tokenizer:
    kind = state.get("kind")
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known: {sorted(TOKENIZERS)}")
    return TOKENIZERS[kind].from_dict(state)


def train_tokenizer(
    kind: str,
    text: str | Iterable[str],
    min_freq: int = 1,
    max_vocab: int | None = None,
    vocab_size: int | None = None,
) -> Tokenizer:
    """A vocabulary from `text`: one string, or an iterable of pieces of it that each end a line."""
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "word":
        return WordTokenizer.train(text, min_freq=min_freq, max_vocab=max_vocab)
    if kind == "byte":
        return ByteTokenizer.train()
    if kind == "bpe":
        if vocab_size is None:
            raise ValueError("data.tokenizer=bpe needs data.vocab_size (e.g. 8000)")
        pieces = [text] if isinstance(text, str) else text
        lines = (line for piece in pieces for line in piece.splitlines(keepends=True))
        return BPETokenizer.train(lines, vocab_size)
    raise ValueError(
        f"data.tokenizer={kind!r} is not a known tokenizer; choose one of {sorted(TOKENIZERS)}"
    )


__all__ = [
    "CHAR_LEVEL",
    "EOS",
    "MISSING",
    "TOKENIZERS",
    "UNK",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "tokenizer_from_dict",
    "train_tokenizer",
]
