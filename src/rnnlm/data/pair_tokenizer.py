"""Tokenizers of translation pairs: one vocabulary per side (or one shared), specials first.

Every side's ids start with PAD=0, BOS=1, EOS=2, UNK=3, so a model, the batches and beam search agree on
them whatever the kind: `char` (characters), `word` (words and punctuation apart, exactly reversible)
or `bpe` (byte-level BPE from Hugging Face `tokenizers`, nothing ever unknown). Both serialise to plain
dicts stored in every translation checkpoint.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rnnlm.errors import UserError

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SIDE_KINDS = ("char", "word", "bpe")
SPACE = "\u2581"  # "▁": the word that follows one plain space
# A word or one punctuation mark with the whitespace before it, or whitespace that ends the text: every
# character of the text lands in exactly one token, so decoding gives the text back.
_WORD = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")


def _word_tokens(text: str) -> list[str]:
    out = []
    for tok in _WORD.findall(text):
        if len(tok) > 1 and tok[0] == " " and not tok[1].isspace():
            tok = SPACE + tok[1:]  # the common case, one plain space, as a mark: fewer types
        out.append(tok)
    return out


class SideTokenizer:
    """The vocabulary of one side of the pairs; `encode` adds no BOS/EOS, unknown tokens become UNK."""

    def __init__(self, kind: str, itos: Sequence[str], json_str: str | None = None) -> None:
        if kind not in SIDE_KINDS:
            raise UserError(
                f"data.tokenizer={kind} is not a tokenizer of pairs: use one of {', '.join(SIDE_KINDS)}"
            )
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a pair vocabulary starts with {SPECIALS}, not {tuple(itos[:4])}")
        self.kind, self.itos, self.json = kind, list(itos), json_str
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        self._hf = _hf().Tokenizer.from_str(json_str) if kind == "bpe" else None

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @classmethod
    def train(
        cls,
        kind: str,
        lines: Iterable[str],
        min_freq: int = 1,
        max_vocab: int | None = None,
        vocab_size: int | None = None,
    ) -> SideTokenizer:
        """A vocabulary from training sentences: by frequency (then alphabetically), or BPE merges."""
        if kind == "bpe":
            return cls._train_bpe(lines, vocab_size)
        if kind not in SIDE_KINDS:
            cls(kind, SPECIALS)  # the one-line error
        if min_freq < 1 or (max_vocab is not None and max_vocab <= len(SPECIALS)):
            raise UserError(
                f"data.min_freq={min_freq} / data.max_vocab={max_vocab}: min_freq must be >= 1 and "
                f"max_vocab > {len(SPECIALS)} (it counts the 4 special tokens)"
            )
        counts: Counter[str] = Counter()
        split = list if kind == "char" else _word_tokens
        for line in lines:
            counts.update(split(line))
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))
        words = [t for t, c in ranked if c >= min_freq]
        if max_vocab is not None:
            words = words[: max_vocab - len(SPECIALS)]
        return cls(kind, [*SPECIALS, *words])

    @classmethod
    def _train_bpe(cls, lines: Iterable[str], vocab_size: int | None) -> SideTokenizer:
        if vocab_size is None or vocab_size <= len(SPECIALS) + 256:
            raise UserError(
                f"data.vocab_size={vocab_size}: tokenizer=bpe needs a vocabulary of the 4 specials, the "
                "256 bytes and some merges: set data.vocab_size (e.g. 8000)"
            )
        hf = _hf()
        tok = hf.Tokenizer(hf.models.BPE())
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIALS),  # ids 0..3, in this order
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(lines, trainer=trainer)
        return cls._from_json(tok.to_str())

    @classmethod
    def _from_json(cls, json_str: str) -> SideTokenizer:
        vocab = _hf().Tokenizer.from_str(json_str).get_vocab()  # merges and specials
        itos = [""] * len(vocab)
        for t, i in vocab.items():
            itos[i] = t
        return cls("bpe", itos, json_str)

    def tokenize(self, text: str) -> list[str]:
        if self._hf is not None:
            return self._hf.encode(text, add_special_tokens=False).tokens
        return list(text) if self.kind == "char" else _word_tokens(text)

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, without BOS/EOS; a token outside the vocabulary is UNK."""
        return self.encode_many([text])[0]

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text (BPE encodes them in one batched call)."""
        if self._hf is not None:
            return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]
        get = self.stoi.get
        split = list if self.kind == "char" else _word_tokens
        return [[get(t, UNK_ID) for t in split(text)] for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`, up to the first EOS; PAD and BOS are skipped, UNK is shown as <unk>."""
        kept = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                kept.append(i)
        if self._hf is not None:
            return self._hf.decode([i for i in kept if i != UNK_ID], skip_special_tokens=True)
        tokens = [self.itos[i] for i in kept]
        if self.kind == "char":
            return "".join(tokens)
        return "".join(" " + t[1:] if len(t) > 1 and t[0] == SPACE else t for t in tokens)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "bpe":
            return {"kind": "bpe", "json": self.json}
        return {"kind": self.kind, "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> SideTokenizer:
        if state.get("kind") == "bpe":
            return cls._from_json(state["json"])
        return cls(state["kind"], state["itos"])


class PairTokenizer:
    """The source and target tokenizers of a translation model (`shared`: one vocabulary, the same
    object on both sides, trained on both sides' training text)."""

    kind = "pairs"

    def __init__(self, source: SideTokenizer, target: SideTokenizer, shared: bool = False) -> None:
        if shared and source is not target:
            raise ValueError("a shared vocabulary is one tokenizer: pass the same one twice")
        self.source, self.target, self.shared = source, target, shared

    @classmethod
    def train(
        cls,
        kind: str,
        sources: Sequence[str],
        targets: Sequence[str],
        shared: bool = False,
        min_freq: int = 1,
        max_vocab: int | None = None,
        vocab_size: int | None = None,
    ) -> PairTokenizer:
        """Vocabularies from the training pairs only."""
        if shared:
            side = SideTokenizer.train(kind, [*sources, *targets], min_freq, max_vocab, vocab_size)
            return cls(side, side, shared=True)
        return cls(
            SideTokenizer.train(kind, sources, min_freq, max_vocab, vocab_size),
            SideTokenizer.train(kind, targets, min_freq, max_vocab, vocab_size),
        )

    @property
    def src_vocab(self) -> int:
        return self.source.vocab_size

    @property
    def tgt_vocab(self) -> int:
        return self.target.vocab_size

    def to_dict(self) -> dict[str, Any]:
        state = {"kind": self.kind, "shared": self.shared, "source": self.source.to_dict()}
        if not self.shared:
            state["target"] = self.target.to_dict()
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PairTokenizer:
        if state.get("kind") != cls.kind:
            raise UserError(
                f"this checkpoint's tokenizer is a {state.get('kind')!r} tokenizer, not one of "
                "translation pairs: it holds a language model, not a translation model"
            )
        source = SideTokenizer.from_dict(state["source"])
        if state.get("shared"):
            return cls(source, source, shared=True)
        return cls(source, SideTokenizer.from_dict(state["target"]))


def _hf():  # noqa: ANN202
    try:
        import tokenizers
    except ModuleNotFoundError:
        raise UserError(
            "data.tokenizer=bpe needs Hugging Face `tokenizers`: pip install tokenizers "
            "(a dependency of rnnlm: `make install` installs it)"
        ) from None
    return tokenizers


__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SIDE_KINDS",
    "SPECIALS",
    "UNK_ID",
    "PairTokenizer",
    "SideTokenizer",
]
