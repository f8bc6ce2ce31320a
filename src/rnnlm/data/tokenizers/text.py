"""Character and word tokenizers: a vocabulary built from the training split, encoded with NumPy."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from itertools import count, repeat

import numpy as np

from rnnlm import schema
from rnnlm.data.tokenizers.base import EOS, MISSING, UNK, Tokenizer

# Line boundaries of str.splitlines() besides "\n" ("\r\n" counts as one); all are also whitespace.
_OTHER_LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_TO_NEWLINE = str.maketrans(dict.fromkeys(_OTHER_LINE_BREAKS, "\n"))


class CharTokenizer(Tokenizer):
    """Every character is a token, newline included. Unseen characters become `<unk>`."""

    kind = "char"

    def __init__(self, itos: list[str]) -> None:
        super().__init__(itos)
        self.unk_id = self.stoi.get(UNK)

    @classmethod
    def train(cls, text: str | Iterable[str]) -> CharTokenizer:
        """The characters of `text` (one string, or an iterable of pieces of the text)."""
        seen: set[str] = set()
        for piece in [text] if isinstance(text, str) else text:
            if piece.isascii():  # the common case: count bytes with NumPy
                counts = np.bincount(np.frombuffer(piece.encode("ascii"), np.uint8), minlength=128)
                seen.update(chr(c) for c in np.flatnonzero(counts))
            else:
                seen.update(piece)
        # `<unk>` is one extra id (never produced from training text) for characters unseen in training.
        return cls([UNK, *sorted(seen)])

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def _lookup(self, text: str) -> np.ndarray:
        if text.isascii():
            codes = np.frombuffer(text.encode("ascii"), np.uint8)
            return self._table(128)[codes]
        # surrogatepass: text read with data.encoding_errors=surrogateescape holds lone surrogates
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        return self._table(0x110000)[codes]

    def _table(self, size: int) -> np.ndarray:
        """Code point -> id (MISSING where the character is not in the vocabulary), for code points < size."""
        tables = self.__dict__.setdefault("_tables", {})
        if size not in tables:
            table = np.full(size, MISSING, dtype=np.int32)
            for ch, i in self.stoi.items():
                if len(ch) == 1 and ord(ch) < size:
                    table[ord(ch)] = i
            tables[size] = table
        return tables[size]

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
    def train(
        cls, text: str | Iterable[str], min_freq: int = 1, max_vocab: int | None = None
    ) -> WordTokenizer:
        """The vocabulary of `text` (one string, or an iterable of pieces that each end a line)."""
        cls._check_limits(min_freq, max_vocab)
        counts: Counter[str] = Counter()
        for piece in [text] if isinstance(text, str) else text:
            counts.update(cls._split(piece))
        return cls.from_counts(counts, min_freq, max_vocab)

    @classmethod
    def train_and_encode(
        cls,
        pieces: Iterable[str],
        write: Callable[[np.ndarray], None],
        min_freq: int = 1,
        max_vocab: int | None = None,
    ) -> tuple[WordTokenizer, np.ndarray, int]:
        """Build the vocabulary of a training text and encode it in the same single pass.

        Each word gets a provisional id the first time it is seen (one C-level dictionary operation per
        token, the pass's whole cost); `write` receives the provisional ids piece by piece. Returns the
        tokenizer, `remap`, the int32 array provisional id -> final id (`<unk>` for words left out by
        `min_freq`/`max_vocab`), with which the caller maps what it wrote (`remap[ids]`), and the number
        of tokens left out that way.
        """
        cls._check_limits(min_freq, max_vocab)
        provisional: defaultdict[str, int] = defaultdict(count().__next__)
        lookup = provisional.__getitem__  # a new word takes the next id
        seen = np.zeros(0, dtype=np.int64)
        for piece in pieces:
            words = cls._split(piece)
            ids = np.fromiter(map(lookup, words), dtype=np.int32, count=len(words))
            write(ids)
            counts = np.bincount(ids, minlength=len(provisional))
            counts[: len(seen)] += seen
            seen = counts
        words = list(provisional)  # in provisional-id order
        tok = cls.from_counts(dict(zip(words, seen.tolist(), strict=True)), min_freq, max_vocab)
        remap = np.fromiter(
            map(tok.stoi.get, words, repeat(MISSING)), dtype=np.int32, count=len(words)
        )
        missing = remap == MISSING
        unknown = int(seen[missing].sum())
        remap[missing] = tok.unk_id
        return tok, remap, unknown

    @staticmethod
    def _check_limits(min_freq: int, max_vocab: int | None) -> None:
        schema.check("data", min_freq=min_freq, max_vocab=max_vocab)

    @classmethod
    def from_counts(
        cls, counts: dict[str, int], min_freq: int = 1, max_vocab: int | None = None
    ) -> WordTokenizer:
        """`<unk>`, `<eos>`, then the words seen at least `min_freq` times, most frequent first."""
        counts = {w: c for w, c in counts.items() if w not in (UNK, EOS)}
        # Most frequent first, ties broken alphabetically, so the vocabulary is deterministic.
        words = [
            w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_freq
        ]
        if max_vocab is not None:
            words = words[: max_vocab - 2]
        return cls([UNK, EOS, *words])

    @staticmethod
    def _split(text: str) -> list[str]:
        """The words of each line (`str.splitlines`), each line followed by `<eos>`.

        Same tokens as `for line in text.splitlines(): line.split() + [EOS]`, but one C-level split.
        """
        if any(c in text for c in _OTHER_LINE_BREAKS):  # rare: make every line boundary a "\n"
            text = text.replace("\r\n", "\n").translate(_TO_NEWLINE)
        tokens = text.replace("\n", f" {EOS} ").split()
        if text and not text.endswith("\n"):
            tokens.append(EOS)  # the last line, unterminated
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
