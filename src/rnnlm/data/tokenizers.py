"""Tokenizers: text <-> token ids, with a vocabulary built from the training split only.

Each tokenizer serialises to a plain dict (`to_dict` / `tokenizer_from_dict`) that is stored inside
every checkpoint, so a checkpoint alone is enough to evaluate or generate.

Corpora of hundreds of MB are read in pieces (`train_tokenizer` takes an iterable of text pieces) and
encoded with NumPy (`encode_array`): characters through a code-point lookup table, words through one C-level
dictionary lookup each. Nothing holds a Python object per token of the whole corpus.

Kinds: `char` (characters), `word` (whitespace-split words), `byte` (the 256 byte values of the UTF-8
text, for enwik8), `bpe` (byte-level BPE trained with Hugging Face `tokenizers`, `data.vocab_size` ids).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from itertools import count, repeat

import numpy as np

from rnnlm import schema

UNK = "<unk>"
EOS = "<eos>"
# Kinds whose loss is also reported in bits per character (per byte for `byte`).
CHAR_LEVEL = ("char", "byte")
MISSING = -1  # id of a token outside the vocabulary, before it becomes <unk> (or is dropped)

# Line boundaries of str.splitlines() besides "\n" ("\r\n" counts as one); all are also whitespace.
_OTHER_LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_TO_NEWLINE = str.maketrans(dict.fromkeys(_OTHER_LINE_BREAKS, "\n"))


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


class ByteTokenizer(Tokenizer):
    """The 256 byte values of the text's UTF-8 encoding (enwik8 and other byte-level benchmarks).

    Text read with `data.encoding_errors=surrogateescape` gives back the file's exact bytes, valid UTF-8
    or not. Nothing is ever unknown. `<eos>` and "\n" both name the newline byte (the token
    generation starts from when the prompt is empty).
    """

    kind = "byte"

    def __init__(self, itos: list[str] | None = None) -> None:
        super().__init__(
            itos
            or [chr(b) if 32 <= b < 127 or b in (9, 10) else f"<0x{b:02X}>" for b in range(256)]
        )
        self.stoi.setdefault(EOS, 10)

    @classmethod
    def train(cls, text: object = None) -> ByteTokenizer:
        return cls()

    @staticmethod
    def _bytes(text: str) -> bytes:
        return text.encode("utf-8", errors="surrogateescape")

    def tokenize(self, text: str) -> list[str]:
        return [self.itos[b] for b in self._bytes(text)]

    def _lookup(self, text: str) -> np.ndarray:
        return np.frombuffer(self._bytes(text), dtype=np.uint8).astype(np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def detokenize(self, tokens: Iterable[str]) -> str:
        return self.decode(self.stoi[t] for t in tokens)


class BPETokenizer(Tokenizer):
    """Byte-level BPE (as in GPT-2) trained on the training split with Hugging Face `tokenizers`.

    Text is encoded line by line (each line with its line break), in training and in use alike, so a
    corpus of any size streams through; decoding gives back the exact text. Nothing is ever unknown.
    Saved as the tokenizer's own JSON string (`to_dict()["json"]`), stored in every checkpoint.
    `<eos>` and "\n" both name the token of a lone line break (where generation starts from when the
    prompt is empty).
    """

    kind = "bpe"

    def __init__(self, json_str: str) -> None:
        hf = _hf_tokenizers().Tokenizer.from_str(json_str)
        vocab = hf.get_vocab()
        itos = [""] * len(vocab)
        for tok, i in vocab.items():
            itos[i] = tok
        super().__init__(itos)
        self.json = json_str
        self._hf = hf
        newline = hf.encode("\n").ids
        if len(newline) == 1:
            self.stoi.setdefault("\n", newline[0])
            self.stoi.setdefault(EOS, newline[0])

    @classmethod
    def train(cls, lines: Iterable[str], vocab_size: int) -> BPETokenizer:
        hf = _hf_tokenizers()
        if vocab_size < 257:
            raise ValueError(
                f"data.vocab_size={vocab_size} is too small for byte-level BPE: it needs the 256 "
                "byte symbols and some merges (e.g. 8000)"
            )
        tok = hf.Tokenizer(hf.models.BPE())
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(lines, trainer=trainer)
        return cls(tok.to_str())

    def to_dict(self) -> dict:
        return {"kind": self.kind, "json": self.json}

    @classmethod
    def from_dict(cls, state: dict) -> BPETokenizer:
        return cls(state["json"])

    def _encodings(self, text: str) -> Iterable[list[int]]:
        lines = text.splitlines(keepends=True)
        for start in range(0, len(lines), 4096):
            for enc in self._hf.encode_batch(lines[start : start + 4096], add_special_tokens=False):
                yield enc.ids

    def _lookup(self, text: str) -> np.ndarray:
        return np.fromiter((i for piece in self._encodings(text) for i in piece), dtype=np.int64)

    def tokenize(self, text: str) -> list[str]:
        return [self.itos[i] for i in self._lookup(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def detokenize(self, tokens: Iterable[str]) -> str:
        return self.decode(self.stoi[t] for t in tokens)


def _hf_tokenizers():  # noqa: ANN202
    try:
        import tokenizers
    except ModuleNotFoundError:
        raise ValueError(
            "data.tokenizer=bpe needs Hugging Face `tokenizers`: pip install tokenizers "
            "(it is a dependency of rnnlm: `make install` installs it)"
        ) from None
    return tokenizers


TOKENIZERS: dict[str, type[Tokenizer]] = {
    "char": CharTokenizer,
    "word": WordTokenizer,
    "byte": ByteTokenizer,
    "bpe": BPETokenizer,
}


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
