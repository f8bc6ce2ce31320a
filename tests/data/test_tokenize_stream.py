"""Streaming, vectorised tokenisation gives exactly the tokens of the plain per-line definitions."""

from __future__ import annotations

import random

import numpy as np
import pytest

import rnnlm.data.sources as sources
from rnnlm.data import LMDataModule
from rnnlm.data.token_cache import IdsWriter
from rnnlm.data.tokenizers import EOS, UNK, CharTokenizer, WordTokenizer


def plain_words(text: str) -> list[str]:
    """The definition: each line's whitespace-split words, then <eos>."""
    out: list[str] = []
    for line in text.splitlines():
        out.extend(line.split())
        out.append(EOS)
    return out


def plain_word_vocab(text: str, min_freq: int = 1, max_vocab: int | None = None) -> list[str]:
    counts: dict[str, int] = {}
    for w in plain_words(text):
        if w not in (UNK, EOS):
            counts[w] = counts.get(w, 0) + 1
    words = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_freq]
    return [UNK, EOS, *(words if max_vocab is None else words[: max_vocab - 2])]


ALPHABET = ["a", "b", "cd", " ", " ", "\n", "\r\n", "\r", "\t", "\x0b", "\x0c", "\x1c", "\x85",
            "\u2028", "\xa0", "é", "日本", UNK, EOS]  # fmt: skip


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def test_word_split_matches_the_definition():
    rng = random.Random(0)
    cases = ["", "a", "a\n", "a\n\n", "\n", "x<eos>y <eos> z", "tail  ", "\r\n\r\n", "a\r"]
    cases += [random_text(rng, rng.randint(0, 30)) for _ in range(3000)]
    for text in cases:
        assert WordTokenizer._split(text) == plain_words(text), repr(text)


def test_char_encoding_matches_the_definition():
    rng = random.Random(1)
    train = random_text(rng, 500)
    tok = CharTokenizer.train(train)
    assert tok.itos == [UNK, *sorted(set(train))]
    for text in [random_text(rng, 200) + "Zß\U0001f600", "plain ascii text\n", ""]:
        ids, unknown = tok.encode_array(text)
        expected = [tok.stoi.get(c, tok.unk_id) for c in text]
        assert ids.dtype == np.int32 and ids.tolist() == expected
        assert unknown == sum(c not in tok.stoi for c in text)
    no_unk = CharTokenizer(["a", "b"])  # a vocabulary without <unk> drops unknown characters
    assert no_unk.encode_with_unknowns("abcab") == ([0, 1, 0, 1], 1)


def _write_corpus(folder, rng: random.Random):
    folder.mkdir(parents=True)
    words = [f"w{i}" for i in range(40)] + ["é", "日本", UNK, EOS]
    for split, n in (("train", 2000), ("valid", 300), ("test", 300)):
        lines = []
        for _ in range(n):
            k = rng.randint(0, 10)
            sep = rng.choice([" ", "  ", "\t", " \xa0"])
            lines.append(
                sep.join(rng.choice(words[: rng.randint(1, len(words))]) for _ in range(k))
            )
        end = rng.choice(["\n", "\r\n"])
        (folder / f"{split}.txt").write_bytes(
            (end.join(lines) + ("" if split == "test" else end)).encode()
        )
    return folder


@pytest.mark.parametrize(
    ("kind", "min_freq", "max_vocab"),
    [("word", 1, None), ("word", 5, None), ("word", 1, 12), ("char", 1, None)],
)
def test_streamed_cache_equals_whole_text_tokenisation(
    tmp_path, monkeypatch, kind, min_freq, max_vocab
):
    monkeypatch.setattr(sources, "PIECE_BYTES", 257)  # many small pieces, cut at line ends
    corpus = _write_corpus(tmp_path / "corpus", random.Random(2))
    dm = LMDataModule(path=str(corpus), tokenizer=kind, cache_dir=str(tmp_path / "cache"),
                      min_freq=min_freq, max_vocab=max_vocab, batch_size=4, bptt=5)  # fmt: skip
    tok = dm.load()
    train = (corpus / "train.txt").read_bytes().decode()  # bytes: keep "\r\n" as it is
    if kind == "word":
        assert tok.itos == plain_word_vocab(train, min_freq, max_vocab)
    else:
        assert tok.itos == [UNK, *sorted(set(train))]
    for split in ("train", "valid", "test"):
        text = (corpus / f"{split}.txt").read_bytes().decode()
        tokens = plain_words(text) if kind == "word" else list(text)
        expected = [tok.stoi.get(t, tok.unk_id) for t in tokens]
        assert dm.ids[split].dtype == np.int32
        assert dm.ids[split].tolist() == expected, split
        assert dm.meta["unknown"][split] == sum(t not in tok.stoi for t in tokens)
        assert dm.meta["tokens"][split] == len(expected)
    # The second time it is a cache hit, memory-mapped, and the windows are views widened per window.
    again = LMDataModule(path=str(corpus), tokenizer=kind, cache_dir=str(tmp_path / "cache"),
                         batch_size=4, bptt=5, min_freq=min_freq, max_vocab=max_vocab)  # fmt: skip
    again.setup("fit")
    assert isinstance(again.ids["train"], np.memmap)
    x, y = again.windows["train"][1]
    assert x.dtype == y.dtype == __import__("torch").long and x.shape == (4, 5)
    assert x[0].tolist() == dm.ids["train"][5:10].tolist()


def test_ids_writer_roundtrip(tmp_path):
    for n in (0, 1, 1000, 123_457):
        path = tmp_path / f"{n}.npy"
        a = np.random.default_rng(n).integers(-5, 2**31 - 1, n)
        with IdsWriter(path) as w:
            w.write(a[: n // 3])
            w.write(a[n // 3 :])
        for mode in (None, "r", "c"):
            b = np.load(path, mmap_mode=mode)
            assert b.dtype == np.int32 and b.shape == (n,) and (b == a).all()


def test_invalid_utf8_names_the_byte_offset(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "PIECE_BYTES", 16)
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.txt").write_bytes(b"good line\n" * 5 + b"bad \xff byte\n")
    (folder / "valid.txt").write_text("v\n")
    (folder / "test.txt").write_text("t\n")
    with pytest.raises(sources.CorpusError, match="byte offset 54"):
        LMDataModule(path=str(folder), tokenizer="word", cache_dir=str(tmp_path / "c")).load()


def test_blank_split_is_refused(tmp_path):
    folder = tmp_path / "blank"
    folder.mkdir()
    (folder / "train.txt").write_text("some words\n")
    (folder / "valid.txt").write_text("  \n\n")
    (folder / "test.txt").write_text("t\n")
    with pytest.raises(sources.CorpusError, match="valid split .* is empty"):
        LMDataModule(path=str(folder), tokenizer="char", cache_dir=str(tmp_path / "c")).load()
    assert not list((tmp_path / "c" / "tokens").glob(".*"))  # no half-built cache entry left
