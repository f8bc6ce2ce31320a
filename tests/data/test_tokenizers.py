"""Tokenizers: round trips, where <unk>/<eos> appear, vocabulary from train only, serialisation."""

from __future__ import annotations

import json

import pytest

from conftest import write_corpus
from rnnlm.data import CharTokenizer, LMDataModule, WordTokenizer, tokenizer_from_dict
from rnnlm.data.tokenizers import EOS, UNK, train_tokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\tSpeak, speak.\n"


# -- char ------------------------------------------------------------------------------------------
def test_char_round_trip_gives_the_text_back() -> None:
    tok = CharTokenizer.train(TEXT)
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT)  # one id per character, newlines and tabs included
    assert tok.decode(ids) == TEXT
    # Any text over the training characters round-trips, not only the training text.
    other = "speak, hear me.\nAll: First\n"
    assert set(other) <= set(TEXT)
    assert tok.decode(tok.encode(other)) == other


def test_char_round_trip_of_text_read_with_surrogateescape() -> None:
    """data.encoding_errors=surrogateescape keeps undecodable bytes as lone surrogates: they are
    characters like any other."""
    text = (b"caf\xc3\xa9 \xff broken\n" * 3).decode("utf-8", errors="surrogateescape")
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text and "\udcff" in tok.stoi


def test_char_vocabulary_is_unk_then_sorted_characters() -> None:
    tok = CharTokenizer.train("cabca\n")
    assert tok.itos == [UNK, "\n", "a", "b", "c"]
    assert tok.unk_id == 0
    assert tok.encode("abc") == [2, 3, 4]


def test_char_unseen_characters_become_unk() -> None:
    tok = CharTokenizer.train("abc")
    ids, unknown = tok.encode_with_unknowns("azb!")
    assert ids == [tok.stoi["a"], tok.unk_id, tok.stoi["b"], tok.unk_id]
    assert unknown == 2
    # A known character never maps to <unk>.
    assert tok.unk_id not in tok.encode("abcabc")


# -- word ------------------------------------------------------------------------------------------
def test_word_round_trip_with_eos_at_line_ends() -> None:
    text = "the cat sat\non the mat\n"
    tok = WordTokenizer.train(text)
    tokens = [tok.itos[i] for i in tok.encode(text)]
    assert tokens == ["the", "cat", "sat", EOS, "on", "the", "mat", EOS]
    assert tok.decode(tok.encode(text)) == text
    # <eos> is exactly one per line, at the line ends.
    ids = tok.encode("a b\nc\n\nd e f\n")
    eos_positions = [i for i, t in enumerate(ids) if t == tok.stoi[EOS]]
    assert len(eos_positions) == 4


def test_word_unk_only_for_words_below_min_freq() -> None:
    text = "a a a b b c\nd a b\n"  # counts: a=4, b=3, c=1, d=1
    tok = WordTokenizer.train(text, min_freq=2)
    assert tok.itos == [UNK, EOS, "a", "b"]
    probe = "a c b d zzz\n"
    tokens = [tok.itos[i] for i in tok.encode(probe)]
    assert tokens == ["a", UNK, "b", UNK, UNK, EOS]
    ids, unknown = tok.encode_with_unknowns(probe)
    assert unknown == 3
    # In-vocabulary words never become <unk>.
    assert tok.unk_id not in tok.encode("a b a b\n")


def test_word_unk_only_for_words_beyond_max_vocab() -> None:
    text = "x x x x y y y z z w\n"  # counts: x=4, y=3, z=2, w=1
    tok = WordTokenizer.train(text, max_vocab=4)  # <unk>, <eos> and the 2 most frequent
    assert tok.itos == [UNK, EOS, "x", "y"]
    assert tok.vocab_size == 4
    tokens = [tok.itos[i] for i in tok.encode("w x z y\n")]
    assert tokens == [UNK, "x", UNK, "y", EOS]


def test_word_vocabulary_is_deterministic_frequency_then_alphabet() -> None:
    tok = WordTokenizer.train("b a c b a d\n")  # a=2, b=2, c=1, d=1
    assert tok.itos == [UNK, EOS, "a", "b", "c", "d"]


@pytest.mark.parametrize("max_vocab", [0, 2])
def test_word_max_vocab_too_small_is_an_error(max_vocab: int) -> None:
    with pytest.raises(ValueError, match="max_vocab"):
        WordTokenizer.train("a b c\n", max_vocab=max_vocab)


def test_unknown_tokenizer_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="data.tokenizer='sentencepiece'"):
        train_tokenizer("sentencepiece", "abc")


# -- serialisation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tok",
    [CharTokenizer.train(TEXT), WordTokenizer.train(TEXT, min_freq=1)],
    ids=["char", "word"],
)
def test_to_dict_round_trip(tok) -> None:
    state = json.loads(json.dumps(tok.to_dict()))  # plain JSON, as stored in caches and checkpoints
    again = tokenizer_from_dict(state)
    assert type(again) is type(tok)
    assert again.kind == tok.kind
    assert again.itos == tok.itos
    assert again.unk_id == tok.unk_id
    probe = TEXT + "unseen words ~~\n"
    assert again.encode(probe) == tok.encode(probe)
    assert again.decode(again.encode(TEXT)) == tok.decode(tok.encode(TEXT))


def test_tokenizer_from_dict_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        tokenizer_from_dict({"kind": "sentencepiece", "itos": ["a"]})


# -- the vocabulary comes from the training split only ----------------------------------------------
@pytest.mark.parametrize("kind", ["char", "word"])
def test_vocabulary_is_built_from_train_only(tmp_path, cache_dir, kind: str) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_text("aaa bbb aaa\nbbb aaa\n" * 4)
    (corpus / "valid.txt").write_text("aaa zzz bbb\n" * 4)  # 'zzz' / 'z' only outside train
    (corpus / "test.txt").write_text("bbb qqq aaa\n" * 4)
    dm = LMDataModule(
        path=str(corpus), tokenizer=kind, batch_size=2, bptt=2, cache_dir=str(tmp_path / "cache")
    )
    tok = dm.load()
    for foreign in ("zzz", "qqq", "z", "q"):
        assert foreign not in tok.stoi
    if kind == "word":
        assert tok.itos == [UNK, EOS, "aaa", "bbb"]
    else:
        assert set(tok.itos) == {UNK, "a", "b", " ", "\n"}
    unknown = dm.unknown_counts
    assert unknown["train"] == 0
    assert unknown["valid"] == (4 if kind == "word" else 12)
    assert unknown["test"] == (4 if kind == "word" else 12)
    # The stored ids decode to <unk> exactly where valid has the foreign word.
    valid_tokens = [tok.itos[i] for i in dm.ids["valid"]]
    if kind == "word":
        assert valid_tokens[:4] == ["aaa", UNK, "bbb", EOS]


def test_token_cache_is_reused_and_gives_the_same_ids(tmp_path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"train": 20, "valid": 5, "test": 5})
    kwargs = dict(path=str(corpus), tokenizer="word", batch_size=2, bptt=2)
    first = LMDataModule(**kwargs, cache_dir=str(tmp_path / "cache"))
    first.load()
    entries = list((tmp_path / "cache" / "tokens").iterdir())
    assert len(entries) == 1
    second = LMDataModule(**kwargs, cache_dir=str(tmp_path / "cache"))
    second.load()
    assert second.tokenizer.itos == first.tokenizer.itos
    for split in ("train", "valid", "test"):
        assert list(second.ids[split]) == list(first.ids[split])
    # A different tokenizer setting is a different cache entry.
    LMDataModule(**{**kwargs, "tokenizer": "char"}, cache_dir=str(tmp_path / "cache")).load()
    assert len(list((tmp_path / "cache" / "tokens").iterdir())) == 2
