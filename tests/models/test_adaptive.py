"""`model.softmax=adaptive`: PyTorch's adaptive log-softmax; it trains, and perplexity is over all tokens."""

from __future__ import annotations

import math
import random

import lightning as L
import pytest
import torch

from rnnlm.data import LMDataModule
from rnnlm.models import RNNLM, detach_hidden
from rnnlm.training.module import LMModule

MODEL = {
    "_target_": "rnnlm.models.RNNLM",
    "cell": "gru",
    "embedding_dim": 16,
    "hidden_dim": 16,
    "num_layers": 1,
    "dropout": 0.0,
    "softmax": "adaptive",
    "adaptive_cutoffs": [8, 30],
}


def _zipf_corpus(folder, vocab=80, seed=0):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    weights = [1 / (r + 1) for r in range(vocab)]
    for split, lines in (("train", 250), ("valid", 40), ("test", 10)):
        text = "\n".join(
            " ".join(rng.choices(words, weights, k=rng.randint(3, 12))) for _ in range(lines)
        )
        if split == "train":  # every word at least once
            text = " ".join(words) + "\n" + text
        (folder / f"{split}.txt").write_text(text + "\n")
    return folder


def test_nll_is_the_log_probability_of_every_target():
    torch.manual_seed(0)
    model = RNNLM(60, cell="lstm", embedding_dim=8, hidden_dim=16, softmax="adaptive",
                  adaptive_cutoffs=[5, 20]).eval()  # fmt: skip
    x = torch.randint(0, 60, (3, 7))
    y = torch.tensor([[0, 1, 4, 5, 19, 20, 59]] * 3)  # head, first and second tail clusters
    logp, _ = model(x)  # (B, T, V): log-probabilities over the whole vocabulary
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3, 7), atol=1e-5)
    expected = -logp.gather(-1, y.unsqueeze(-1)).sum()
    nll, _ = model.nll(x, y, reduction="sum")
    torch.testing.assert_close(nll, expected, rtol=1e-5, atol=1e-4)
    mean, _ = model.nll(x, y, reduction="mean")
    torch.testing.assert_close(mean, expected / y.numel(), rtol=1e-5, atol=1e-5)


def test_tied_adaptive_softmax_scores_with_the_embedding_rows():
    torch.manual_seed(0)
    model = RNNLM(60, cell="lstm", embedding_dim=8, hidden_dim=8, softmax="adaptive",
                  adaptive_cutoffs=[5, 20], tie_weights=True).eval()  # fmt: skip
    emb = model.embedding.weight
    # One word vector per word: the untied parts are one vector per tail cluster and the biases.
    untied = 2 * 8 + (5 + 2) + 15 + 40
    assert model.decoder.head.weight is emb
    n_decoder = sum(p.numel() for n, p in model.decoder.named_parameters() if p is not emb)
    assert n_decoder == untied
    with torch.no_grad():
        for p in (model.decoder.head.bias, *(rows.bias for _, rows in model.decoder.tail)):
            p.uniform_(-1, 1)
    x = torch.randint(0, 50, (3, 7))
    y = torch.tensor([[0, 1, 4, 5, 19, 20, 59]] * 3)  # head, first and second tail clusters
    logp, _ = model(x)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3, 7), atol=1e-5)
    nll, _ = model.nll(x, y, reduction="sum")
    torch.testing.assert_close(nll, -logp.gather(-1, y.unsqueeze(-1)).sum(), rtol=1e-5, atol=1e-4)

    # The same distribution written out: p(w) = p(cluster) p(w | cluster), each from the embedding rows.
    h, _ = model.features(x)
    h = h.reshape(-1, 8)
    head = torch.log_softmax(
        h @ torch.cat([emb[:5], model.decoder.head.extra]).T + model.decoder.head.bias, -1
    )
    parts = [head[:, :5]]
    for i, (lo, hi) in enumerate([(5, 20), (20, 60)]):
        rows = model.decoder.tail[i][1]
        parts.append(head[:, 5 + i : 6 + i] + torch.log_softmax(h @ emb[lo:hi].T + rows.bias, -1))
    torch.testing.assert_close(logp.reshape(-1, 60), torch.cat(parts, -1), rtol=1e-5, atol=1e-5)

    # Training moves the shared matrix through both of its uses.
    model.train()
    loss, _ = model.nll(x, y)
    loss.backward()
    # Word 59 is never an input (x < 50 below): its row's gradient comes through the decoder alone.
    assert emb.grad is not None and emb.grad[59].abs().sum() > 0


def test_tied_adaptive_gradients_equal_the_written_out_softmax():
    # The clusters read blocks of one split of the embedding (one gradient pass over it): same
    # gradients as the softmax written out with plain slices.
    torch.manual_seed(0)
    model = RNNLM(60, cell="lstm", embedding_dim=8, hidden_dim=8, softmax="adaptive",
                  adaptive_cutoffs=[5, 20], tie_weights=True).eval()  # fmt: skip
    emb = model.embedding.weight
    x = torch.randint(0, 60, (3, 7))
    y = torch.tensor([[0, 1, 4, 5, 19, 20, 59]] * 3)
    model.nll(x, y, reduction="sum")[0].backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    h, _ = model.features(x)
    h = h.reshape(-1, 8)
    dec = model.decoder
    head = torch.log_softmax(h @ torch.cat([emb[:5], dec.head.extra]).T + dec.head.bias, -1)
    parts = [head[:, :5]]
    for i, (lo, hi) in enumerate([(5, 20), (20, 60)]):
        rows = dec.tail[i][1]
        parts.append(head[:, 5 + i : 6 + i] + torch.log_softmax(h @ emb[lo:hi].T + rows.bias, -1))
    logp = torch.cat(parts, -1)
    (-logp.gather(-1, y.reshape(-1, 1)).sum()).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(fast[n], p.grad, rtol=1e-5, atol=1e-5, msg=n)
    assert all(c.rows is None for c in dec._clusters())  # the split is dropped after each call


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"adaptive_cutoffs": None}, "needs model.adaptive_cutoffs"),
        ({"adaptive_cutoffs": [30, 10]}, "increasing"),
        ({"adaptive_cutoffs": [10, 60]}, "vocab_size - 1"),
        ({"adaptive_cutoffs": [10], "tie_weights": True, "adaptive_div_value": 2.0}, "div_value"),
        ({"adaptive_cutoffs": [10], "tie_weights": True, "last_hidden_dim": 16}, "embedding_dim"),
    ],
)
def test_bad_adaptive_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RNNLM(60, embedding_dim=8, hidden_dim=8, softmax="adaptive", **kwargs)


def test_adaptive_softmax_trains_and_perplexity_is_over_all_tokens(tmp_path):
    corpus = _zipf_corpus(tmp_path)
    L.seed_everything(0, verbose=False)
    dm = LMDataModule(path=str(corpus), tokenizer="word", batch_size=8, bptt=10,
                      cache_dir=str(tmp_path / "cache"))  # fmt: skip
    tok = dm.load()
    module = LMModule(model=MODEL, optim={"_target_": "torch.optim.Adam", "lr": 0.01},
                      vocab_size=tok.vocab_size, tokenizer=tok)  # fmt: skip
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    before = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/loss"]
    trainer.fit(module, datamodule=dm)
    after = trainer.validate(module, datamodule=dm, verbose=False)[0]
    assert after["val/loss"] < before - 0.3  # it learns the unigram distribution at least
    assert after["val/ppl"] == pytest.approx(math.exp(after["val/loss"]), rel=1e-6)

    # Perplexity over every validation token, head and tail clusters alike, from the full distribution.
    model = module.model.eval()
    dm.setup("validate")  # the Trainer's teardown closed the memory-mapped ids
    windows = dm.windows["valid"]
    hidden, nll, count = None, 0.0, 0
    with torch.no_grad():
        for i in range(len(windows)):
            x, y = windows[i]
            logp, hidden = model(x, hidden)
            hidden = detach_hidden(hidden)
            nll -= float(logp.gather(-1, y.unsqueeze(-1)).sum())
            count += y.numel()
    assert count == windows.num_tokens
    assert after["val/loss"] == pytest.approx(nll / count, rel=1e-5)
    tail = int((torch.as_tensor(dm.ids["valid"]) >= MODEL["adaptive_cutoffs"][0]).sum())
    assert tail > count / 4  # the tail clusters really are part of it
