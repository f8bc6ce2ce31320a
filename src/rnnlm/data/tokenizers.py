"""Tokenizers: text <-> token ids, with a vocabulary built from the training split only.

Each tokenizer serialises to a plain dict (`to_dict` / `tokenizer_from_dict`) that is stored inside
every checkpoint, so a checkpoint alone is enough to evaluate or generate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

UNK = "<unk>"
EOS = "<eos>"


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
        ids: list[int] = []
        unknown = 0
        stoi, unk = self.stoi, self.unk_id
        for tok in self.tokenize(text):
            i = stoi.get(tok)
            if i is None:
                unknown += 1
                if unk is None:
                    continue
                i = unk
            ids.append(i)
        return ids, unknown

    def decode(self, ids: Iterable[int]) -> str:
        return self.detokenize(self.itos[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "itos": list(self.itos)}


class CharTokenizer(Tokenizer):
    """Every character is a token, newline included. Unseen characters become `<unk>`."""

    kind = "char"

    def __init__(self, itos: list[str]) -> None:
        super().__init__(itos)
        self.unk_id = self.stoi.get(UNK)

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        # `<unk>` is one extra id (never produced from training text) for characters unseen in training.
        return cls([UNK, *sorted(set(text))])

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def detokenize(self, tokens: Iterable[str]) -> str:
        return "".join(tokens)


class WordTokenizer(Tokenizer):
    """Whitespace-split words, `<eos>` at the end of every line, `<unk>` for words outside the vocabulary."""

    kind = "word"

    def __init__(self, itos: list[str]) -> None:
        super().__init__(itos)
        if UNK not in self.stoi:
            raise ValueError(f"a word vocabulary must contain {UNK}")
        self.unk_id = self.stoi[UNK]

    @classmethod
    def train(cls, text: str, min_freq: int = 1, max_vocab: int | None = None) -> WordTokenizer:
        if min_freq < 1:
            raise ValueError(f"data.min_freq={min_freq} must be >= 1")
        if max_vocab is not None and max_vocab < 3:
            raise ValueError(
                f"data.max_vocab={max_vocab} leaves no room for words: it must be >= 3 "
                f"({UNK}, {EOS} and at least one word) or null for no limit"
            )
        counts = Counter(cls._split(text))
        counts.pop(UNK, None)
        counts.pop(EOS, None)
        # Most frequent first, ties broken alphabetically, so the vocabulary is deterministic.
        words = [
            w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_freq
        ]
        if max_vocab is not None:
            words = words[: max_vocab - 2]
        return cls([UNK, EOS, *words])

    @staticmethod
    def _split(text: str) -> list[str]:
        tokens: list[str] = []
        for line in text.splitlines():
            tokens.extend(line.split())
            tokens.append(EOS)
        return tokens

    def tokenize(self, text: str) -> list[str]:
        return self._split(text)

    def detokenize(self, tokens: Iterable[str]) -> str:
        out: list[str] = []
        for tok in tokens:
            if tok == EOS:
                out.append("\n")
            else:
                if out and out[-1] != "\n":
                    out.append(" ")
                out.append(tok)
        return "".join(out)


TOKENIZERS: dict[str, type[Tokenizer]] = {"char": CharTokenizer, "word": WordTokenizer}


def tokenizer_from_dict(state: dict) -> Tokenizer:
    kind = state.get("kind")
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known: {sorted(TOKENIZERS)}")
    return TOKENIZERS[kind](state["itos"])


def train_tokenizer(
    kind: str, text: str, min_freq: int = 1, max_vocab: int | None = None
) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "word":
        return WordTokenizer.train(text, min_freq=min_freq, max_vocab=max_vocab)
    raise ValueError(
        f"data.tokenizer={kind!r} is not a known tokenizer; choose one of {sorted(TOKENIZERS)}"
    )
