"""The translation models (seq2seq.py, seq2seq_transformer.py, conditional.py) and their decoding
(beam.py): shapes and dtypes, PAD in the source changes nothing, the training loss equals a loop of
decoding steps, beam_size=1 is greedy, and a tiny model learns to copy."""

from __future__ import annotations

import pytest
import torch

from rnnlm.models import RNNLM, ConditionalLM, Seq2SeqAttention, Seq2SeqTransformer, TransformerLM
from rnnlm.models.beam import beam_search, greedy, length_limits
from rnnlm.models.conditional import left_pad
from rnnlm.models.seq2seq_base import BOS, EOS, PAD

SV, TV = 13, 11  # source and target vocabularies (4 specials each)


def _seq2seq(**kw):
    return Seq2SeqAttention(SV, TV, embedding_dim=8, hidden_dim=12, dropout=0.1, **kw)


def _transformer():
    return Seq2SeqTransformer(
        SV, TV, d_model=8, nhead=2, encoder_layers=1, decoder_layers=1, dim_feedforward=16
    )


def _cond(kind: str, shared: bool = False):
    tv = SV if shared else TV
    v = ConditionalLM.joint_vocab(SV, tv, shared)
    if kind == "transformer":
        lm = TransformerLM(v, embedding_dim=8, num_layers=1, num_heads=2, max_len=64, memory=8)
    else:
        lm = RNNLM(v, cell=kind, embedding_dim=8, hidden_dim=8, num_layers=2)
    return ConditionalLM(lm, SV, tv, shared)


MODELS = {
    "gru-bahdanau": lambda: _seq2seq(),
    "lstm-luong": lambda: _seq2seq(cell="lstm", attention="luong", decoder_layers=2),
    "gru-luong-no-feeding": lambda: _seq2seq(attention="luong", input_feeding=False),
    "lstm-bahdanau-no-feeding-untied": lambda: _seq2seq(
        cell="lstm", input_feeding=False, tie_embeddings=False, encoder_layers=2
    ),
    "transformer": _transformer,
    "cond-gru": lambda: _cond("gru"),
    "cond-mingru-shared": lambda: _cond("mingru", shared=True),
    "cond-transformer": lambda: _cond("transformer"),
}


def _batch(g: torch.Generator, vocab_src: int = SV, vocab_tgt: int = TV):
    """Three pairs of different lengths, right-padded; targets end with EOS."""
    src_len = torch.tensor([5, 2, 4])
    tgt_len = torch.tensor([3, 6, 1])  # without EOS
    src = torch.randint(4, vocab_src, (3, 5), generator=g)
    src = src.masked_fill(torch.arange(5) >= src_len.unsqueeze(1), PAD)
    tgt = torch.randint(4, vocab_tgt, (3, 7), generator=g)
    tgt = tgt.masked_fill(torch.arange(7) >= tgt_len.unsqueeze(1), PAD)
    tgt[torch.arange(3), tgt_len] = EOS
    return src, src_len, tgt


def _vocab_tgt(model) -> int:
    return model.tgt_vocab


@pytest.fixture(params=sorted(MODELS))
def model(request):
    torch.manual_seed(0)
    return MODELS[request.param]().eval()


def test_shapes_and_dtypes(model):
    src, src_len, tgt = _batch(torch.Generator().manual_seed(1), SV, _vocab_tgt(model))
    model.train()
    loss = model.nll(src, src_len, tgt, reduction="mean")
    assert loss.shape == () and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    model.eval()
    state = model.start(src, src_len)
    logp, state = model.step(state, torch.full((3,), BOS))
    assert logp.shape == (3, _vocab_tgt(model)) and logp.dtype == torch.float32
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3))
    state = model.reorder(state, torch.tensor([2, 2, 0, 1]))
    logp2, _ = model.step(state, torch.tensor([5, 5, 6, 7]))
    assert logp2.shape == (4, _vocab_tgt(model))
    torch.testing.assert_close(logp2[0], logp2[1])


def _step_loop_nll(model, src, src_len, tgt) -> torch.Tensor:
    """-sum log p(tgt) by teacher-forced decoding steps, PAD positions skipped."""
    state = model.start(src, src_len)
    prev, total = torch.full((src.size(0),), BOS), torch.zeros(())
    for t in range(tgt.size(1)):
        logp, state = model.step(state, prev)
        real = tgt[:, t] != PAD
        total -= logp.gather(1, tgt[:, t : t + 1]).squeeze(1)[real].sum()
        prev = tgt[:, t]
    return total


def test_nll_equals_a_loop_of_steps(model):
    src, src_len, tgt = _batch(torch.Generator().manual_seed(2), SV, _vocab_tgt(model))
    with torch.no_grad():
        loss = model.nll(src, src_len, tgt, reduction="sum")
        mean = model.nll(src, src_len, tgt, reduction="mean")
        loop = _step_loop_nll(model, src, src_len, tgt)
    torch.testing.assert_close(loss, loop, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(mean, loss / (tgt != PAD).sum(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [m for m in sorted(MODELS) if not m.startswith("cond")])
def test_pad_in_the_source_changes_nothing(name):
    """A sentence alone, with extra PAD columns, or beside a longer one: the same loss and steps."""
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    src, src_len, tgt = _batch(torch.Generator().manual_seed(3))
    with torch.no_grad():
        for i in range(3):
            n = int(src_len[i])
            alone = model.nll(src[i : i + 1, :n], src_len[i : i + 1], tgt[i : i + 1])
            padded = torch.cat([src[i : i + 1], torch.full((1, 4), PAD)], 1)
            wide = model.nll(padded, src_len[i : i + 1], tgt[i : i + 1])
            in_batch = model.nll(src, src_len, tgt * (torch.arange(3) == i).unsqueeze(1))
            torch.testing.assert_close(wide, alone, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(in_batch, alone, rtol=1e-5, atol=1e-5)
        logp_batch, _ = model.step(model.start(src, src_len), torch.full((3,), BOS))
        logp_one, _ = model.step(model.start(src[1:2, :2], src_len[1:2]), torch.full((1,), BOS))
        torch.testing.assert_close(logp_batch[1:2], logp_one, rtol=1e-5, atol=1e-5)


def test_left_pad():
    src = torch.tensor([[5, 6, 7], [8, 0, 0]])
    assert left_pad(src, torch.tensor([3, 1])).tolist() == [[5, 6, 7], [0, 0, 8]]


def test_beam_size_one_is_greedy(model):
    src, src_len, _ = _batch(torch.Generator().manual_seed(4))
    out = greedy(model, src, src_len, max_len=9)
    assert out == beam_search(model, src, src_len, beam_size=1, max_len=9)
    for words, n in zip(out, length_limits(src_len, 9), strict=True):
        assert len(words) <= n and EOS not in words and BOS not in words


def test_beam_search_is_batched_and_bounded(model):
    src, src_len, _ = _batch(torch.Generator().manual_seed(5))
    together = beam_search(model, src, src_len, beam_size=3, max_len=7)
    alone = [beam_search(model, src[i : i + 1], src_len[i : i + 1], 3, max_len=7) for i in range(3)]
    if not isinstance(model, ConditionalLM):  # left padding is context to a language model
        assert together == [a[0] for a in alone]
    assert all(len(w) <= 7 and EOS not in w for w in together)
    assert not model.training  # the search restores the mode it found


def test_beam_size_zero_is_refused():
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        beam_search(_seq2seq(), torch.tensor([[5]]), torch.tensor([1]), beam_size=0)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: _seq2seq(attention="foo"), "attention='foo'"),
        (lambda: _seq2seq(cell="mingru"), "model.cell='mingru'"),
        (lambda: Seq2SeqAttention(SV, TV, hidden_dim=7), "must be even"),
        (lambda: Seq2SeqAttention(SV, 3), "model.tgt_vocab=3"),
        (lambda: Seq2SeqTransformer(SV, TV, d_model=10, nhead=4), "multiple of model.nhead"),
        (lambda: ConditionalLM(RNNLM(20), SV, TV, shared=False), "joint_vocab"),
        (lambda: ConditionalLM(RNNLM(SV), SV, TV, shared=True), "shared=true"),
    ],
)
def test_impossible_values_are_refused(build, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        build()


@pytest.mark.parametrize("name", ["gru-bahdanau", "transformer", "cond-gru"])
def test_bf16_autocast_gives_float32(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    src, src_len, tgt = _batch(torch.Generator().manual_seed(6), SV, model.tgt_vocab)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.nll(src, src_len, tgt)
        assert loss.dtype == torch.float32
        loss.backward()
        with torch.no_grad():
            logp, _ = model.step(model.eval().start(src, src_len), torch.full((3,), BOS))
    assert logp.dtype == torch.float32 and torch.isfinite(logp).all()
    ref = model.nll(src, src_len, tgt)
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=0.05, atol=0.5)


def test_a_tiny_model_learns_to_copy():
    """8 source sentences; the target is the source (same ids): exact copies after a short training."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(7)
    src_len = torch.randint(2, 6, (8,), generator=g)
    src = torch.randint(4, 10, (8, 5), generator=g).masked_fill(
        torch.arange(5) >= src_len[:, None], PAD
    )
    tgt = torch.cat([src, torch.zeros(8, 1, dtype=torch.long)], 1)
    tgt[torch.arange(8), src_len] = EOS
    model = Seq2SeqAttention(
        10, 10, embedding_dim=16, hidden_dim=32, dropout=0.0, attention="luong"
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        model.nll(src, src_len, tgt, reduction="mean").backward()
        opt.step()
    expected = [s[:n].tolist() for s, n in zip(src, src_len, strict=True)]
    assert greedy(model, src, src_len) == expected
    assert beam_search(model, src, src_len, beam_size=3) == expected
