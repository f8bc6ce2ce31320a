"""Byte and BPE tokenizers: round trips, serialisation, and a run that trains, evaluates and generates."""

from __future__ import annotations

import json
import math
from pathlib import Path

from conftest import tiny_overrides, train_in_process
from rnnlm.data.tokenizers import BPETokenizer, ByteTokenizer, tokenizer_from_dict, train_tokenizer

# ==================================================================================================
# Tokenizers: BPE and bytes
# ==================================================================================================
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n  Ünïcödé — ok?\nAll:\nSpeak, speak.\n"


def test_bpe_round_trip_and_serialisation() -> None:
    tok = train_tokenizer("bpe", TEXT * 20, vocab_size=300)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size <= 300
    ids, unknown = tok.encode_with_unknowns(TEXT)
    assert unknown == 0 and tok.decode(ids) == TEXT
    assert len(ids) < len(TEXT.encode())  # merges happened
    state = json.loads(json.dumps(tok.to_dict()))  # plain JSON
    again = tokenizer_from_dict(state)
    assert again.encode(TEXT) == ids and again.decode(ids) == TEXT
    assert tok.decode(tok.encode("never seen: 你好\n")) == "never seen: 你好\n"


def test_byte_tokenizer_keeps_every_byte() -> None:
    tok = ByteTokenizer()
    raw = b"caf\xc3\xa9 \xff\xfe broken \xe2\x82"
    text = raw.decode("utf-8", errors="surrogateescape")
    assert bytes(tok.encode(text)) == raw and tok.vocab_size == 256
    assert tokenizer_from_dict(tok.to_dict()).encode(text) == tok.encode(text)


def test_bpe_trains_evaluates_and_generates(corpus_dir: Path, tmp_path: Path) -> None:
    from rnnlm.inference.lm import LanguageModel

    out = tmp_path / "run"
    ppl = train_in_process(
        [*tiny_overrides(corpus_dir), "data.tokenizer=bpe", "data.vocab_size=300"], out
    )
    assert math.isfinite(ppl)
    lm = LanguageModel.load(out / "checkpoints" / "best.ckpt")
    assert lm.tokenizer.kind == "bpe"
    text = lm.generate("the cat", max_new_tokens=5, seed=0)
    assert text.startswith("the cat")
    assert math.isfinite(lm.score("the cat sat on a mat\n").perplexity)
