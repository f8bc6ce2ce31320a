"""Byte-level tokenizers: the 256 byte values (`byte`, for enwik8) and byte-level BPE (`bpe`, trained with
Hugging Face `tokenizers`, `data.vocab_size` ids)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from rnnlm.data.tokenizers.base import EOS, Tokenizer


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
