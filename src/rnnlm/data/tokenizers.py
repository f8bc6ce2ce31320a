"""Tokenizers: text <-> token ids, with a vocabulary built from the training split only.

Each tokenizer serialises to a plain dict (`to_dict` / `tokenizer_from_dict`) that is stored inside
every checkpoint, so a checkpoint alone is enough to evaluate or generate.

Kinds: `char` (characters), `word` (whitespace-split words), `byte` (the 256 byte values of the UTF-8
text, for enwik8), `bpe` (byte-level BPE trained with Hugging Face `tokenizers`, `data.vocab_size` ids).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

UNK = "<unk>"
EOS = "<eos>"
# Kinds whose loss is also reported in bits per character (per byte for `byte`).
CHAR_LEVEL = ("char", "byte")


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

    def encode_with_unknowns(self, text: str) -> tuple[list[int], int]:
        return list(self._bytes(text)), 0

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

    def encode_with_unknowns(self, text: str) -> tuple[list[int], int]:
        ids: list[int] = []
        for piece in self._encodings(text):
            ids.extend(piece)
        return ids, 0

    def tokenize(self, text: str) -> list[str]:
        return [self.itos[i] for i in self.encode_with_unknowns(text)[0]]

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
    text: str,
    min_freq: int = 1,
    max_vocab: int | None = None,
    vocab_size: int | None = None,
) -> Tokenizer:
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
