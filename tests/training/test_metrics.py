"""Split perplexity is exp(total cross-entropy / total tokens), not a mean of per-batch perplexities."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from rnnlm.data import windows
from rnnlm.training.metrics import TokenMeanLoss, bits_per_char, perplexity
from rnnlm.training.module import LMModule


def test_token_mean_loss_weights_batches_by_their_token_count() -> None:
    torch.manual_seed(0)
    metric = TokenMeanLoss()
    sizes = [(4, 5), (4, 5), (4, 1), (2, 3)]  # batches of 20, 20, 4 and 6 target tokens
    vocab = 7
    total_nll, total_tokens, batch_ppls = 0.0, 0, []
    for i, (b, t) in enumerate(sizes):
        logits = torch.randn(b * t, vocab) * (1 + 2 * i)  # batches of very different losses
        targets = torch.randint(0, vocab, (b * t,))
        nll_sum = F.cross_entropy(logits, targets, reduction="sum")
        metric.update(nll_sum, b * t)
        total_nll += float(nll_sum)
        total_tokens += b * t
        batch_ppls.append(math.exp(float(nll_sum) / (b * t)))
    mean_loss = float(metric.compute())
    assert mean_loss == pytest.approx(total_nll / total_tokens, rel=1e-9)
    split_ppl = perplexity(metric.compute())
    assert split_ppl == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-9)
    # The mean of per-batch perplexities (or of per-batch mean losses) is a different number.
    assert abs(split_ppl - sum(batch_ppls) / len(batch_ppls)) > 1e-3 * split_ppl
    unweighted = sum(math.log(p) for p in batch_ppls) / len(batch_ppls)
    assert abs(mean_loss - unweighted) > 1e-3


def test_token_mean_loss_reset_and_float64_accumulation() -> None:
    metric = TokenMeanLoss()
    for _ in range(1000):
        metric.update(torch.tensor(1e-3 * 7, dtype=torch.float32), 7)
    assert metric.nll.dtype == torch.float64
    assert float(metric.compute()) == pytest.approx(1e-3, rel=1e-6)
    metric.reset()
    assert int(metric.tokens) == 0
    metric.update(torch.tensor(6.0), 3)
    assert float(metric.compute()) == pytest.approx(2.0)


def test_perplexity_and_bpc_helpers() -> None:
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50.0)) == pytest.approx(50.0)
    assert math.isfinite(perplexity(1e6))  # clamped, no OverflowError
    assert bits_per_char(math.log(2.0)) == pytest.approx(1.0)
    assert bits_per_char(torch.tensor(math.log(8.0))) == pytest.approx(3.0)


def test_module_val_perplexity_is_token_weighted_over_the_split(tmp_path) -> None:
    """Trainer.validate over windows of unequal length logs exp(sum NLL / tokens) of the whole split."""
    torch.manual_seed(0)
    vocab, batch_size, bptt = 11, 3, 4
    stream = torch.randint(0, vocab, (3 * 15,))  # 15 per column -> windows of 4, 4, 4, 2 steps
    w = windows(stream, batch_size, bptt, "valid")
    assert [w[i][0].size(1) for i in range(len(w))] == [4, 4, 4, 2]
    model_cfg = {
        "_target_": "rnnlm.models.RNNLM",
        "cell": "lstm",
        "embedding_dim": 8,
        "hidden_dim": 8,
        "num_layers": 1,
        "dropout": 0.0,
        "tie_weights": False,
    }
    module = LMModule(
        model=model_cfg, optim={"_target_": "torch.optim.SGD", "lr": 0.1}, vocab_size=vocab
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    results = trainer.validate(module, dataloaders=DataLoader(w, batch_size=None), verbose=False)

    # By hand: the whole split at once (the carried state makes windows one long sequence).
    module.model.eval()
    with torch.no_grad():
        logits, _ = module.model(w.data[:, :-1])
        per_token = F.cross_entropy(logits.flatten(0, 1), w.data[:, 1:].flatten(), reduction="none")
        window_means = []
        for i in range(len(w)):
            x, y = w[i]
            start = i * bptt
            window_means.append(
                float(per_token.view(batch_size, -1)[:, start : start + x.size(1)].mean())
            )
    expected_loss = float(per_token.mean())
    assert per_token.numel() == w.num_tokens == 42
    assert results[0]["val/loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert results[0]["val/ppl"] == pytest.approx(math.exp(expected_loss), rel=1e-5)
    mean_of_window_ppls = sum(math.exp(m) for m in window_means) / len(window_means)
    assert mean_of_window_ppls != pytest.approx(results[0]["val/ppl"], rel=1e-4)
