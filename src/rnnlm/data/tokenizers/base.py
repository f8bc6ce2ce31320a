"""The tokenizer interface and the two special words: what every tokenizer and its checkpoint dict share."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat

import numpy as np

UNK = "<unk>"
EOS = "<eos>"
# Kinds whose loss is also reported in bits per character (per byte for `byte`).
CHAR_LEVEL = ("char", "byte")
MISSING = -1  # id of a token outside the vocabulary, before it becomes <unk> (or is dropped)


class Tokenizer:
    """A vocabulary (`itos`, id -> token) plus the rule that cuts text into tokens."""

    kind: str = ""
    unk_id: int | None = None

    def __init__(self, itos: list[str]) -> None:
        if not itos:
            raise ValueError("the vocabulary is empty: the training split holds no tokens")
        self.itos = list(itos)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def detokenize(self, tokens: Iterable[str]) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids; tokens outside the vocabulary map to `<unk>` (or are dropped if there is none)."""
        ids, _ = self.encode_with_unknowns(text)
        return ids

    def encode_with_unknowns(self, text: str) -> tuple[list[int], int]:
        """Token ids and the number of tokens that were not in the vocabulary."""
        ids, unknown = self.encode_array(text)
        return ids.tolist(), unknown

    def encode_array(self, text: str) -> tuple[np.ndarray, int]:
        """Token ids as an int32 array, and the number of tokens that were not in the vocabulary
        (mapped to `<unk>`, or dropped when the vocabulary has none)."""
        ids = self._lookup(text)
        missing = ids == MISSING
        unknown = int(np.count_nonzero(missing))
        if unknown:
            ids = ids[~missing] if self.unk_id is None else np.where(missing, self.unk_id, ids)
        return ids.astype(np.int32, copy=False), unknown

    def _lookup(self, text: str) -> np.ndarray:
        """Ids of the tokens of `text`, MISSING for tokens outside the vocabulary."""
        get = self.stoi.get
        return np.fromiter(map(get, self.tokenize(text), repeat(MISSING)), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return self.detokenize(self.itos[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, state: dict) -> Tokenizer:
        return cls(state["itos"])
