"""The training path's speed options keep its behaviour: metrics, sparse gradients, steady-state timing."""

from __future__ import annotations

import csv
import math
import random

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from rnnlm.data import LMDataModule
from rnnlm.errors import UserError
from rnnlm.training.callbacks import TokensPerSecond
from rnnlm.training.module import LMModule


def _model(**kw):
    return {"_target_": "rnnlm.models.RNNLM", "cell": "lstm", "embedding_dim": 12,
            "hidden_dim": 12, "num_layers": 2, "dropout": 0.1, **kw}  # fmt: skip


def _corpus(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red"]
    for split, n in (("train", 300), ("valid", 40), ("test", 20)):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(n)]
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def _fit(tmp_path, model, optim, tokenizer="word", steps=12, **trainer_kw):
    L.seed_everything(0, verbose=False)
    dm = LMDataModule(path=str(_corpus(tmp_path)), tokenizer=tokenizer, batch_size=4, bptt=6,
                      cache_dir=str(tmp_path / "cache"))  # fmt: skip
    tok = dm.load()
    module = LMModule(model=model, optim=optim, vocab_size=tok.vocab_size, tokenizer=tok)
    kw = {"max_steps": steps, "accelerator": "cpu", "logger": False, "enable_checkpointing": False,
          "enable_progress_bar": False, "enable_model_summary": False, "gradient_clip_val": 0.25,
          "limit_val_batches": 3, **trainer_kw}  # fmt: skip
    trainer = L.Trainer(**kw)
    trainer.fit(module, datamodule=dm)
    return module, trainer


@pytest.mark.parametrize("tokenizer", ["word", "char"])
def test_step_metrics_are_logged_on_every_logged_step(tmp_path, tokenizer):
    logger = CSVLogger(tmp_path / "csv", name="", version="")
    _fit(tmp_path, _model(), {"_target_": "torch.optim.SGD", "lr": 1.0}, tokenizer=tokenizer,
         steps=10, logger=logger, log_every_n_steps=3, val_check_interval=5)  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").read_text().splitlines()))
    names = ["train/loss", "train/ppl", "train/lr"] + (["train/bpc"] if tokenizer == "char" else [])
    steps = {n: sorted(int(r["step"]) for r in rows if r.get(n)) for n in names}
    assert steps["train/loss"] == [2, 5, 8]
    for n in names:
        assert steps[n] == steps["train/loss"], n
    for r in rows:
        if r.get("train/ppl"):
            assert float(r["train/ppl"]) == pytest.approx(
                math.exp(float(r["train/loss"])), rel=1e-5
            )
    assert any(r.get("val/ppl") for r in rows)


def test_sparse_embedding_trains_with_sgd(tmp_path):
    dense, _ = _fit(tmp_path / "a", _model(), {"_target_": "torch.optim.SGD", "lr": 5.0})
    sparse, _ = _fit(tmp_path / "b", _model(sparse_embedding=True),
                     {"_target_": "torch.optim.SGD", "lr": 5.0, "foreach": True})  # fmt: skip
    assert sparse.model.embedding.weight.grad.is_sparse
    # Same seed, same maths: the same weights after training (the update order differs in float rounding).
    for (name, p), q in zip(dense.model.named_parameters(), sparse.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("optim", ["torch.optim.Adam", "torch.optim.AdamW"])
def test_sparse_embedding_refuses_optimisers_without_sparse_support(tmp_path, optim):
    with pytest.raises(UserError, match="sparse_embedding=true"):
        _fit(tmp_path, _model(sparse_embedding=True), {"_target_": optim, "lr": 0.01})


def test_sparse_embedding_and_tied_weights_are_refused():
    from rnnlm.models import RNNLM

    with pytest.raises(ValueError, match="sparse_embedding"):
        RNNLM(20, embedding_dim=8, hidden_dim=8, tie_weights=True, sparse_embedding=True)


def test_steady_state_throughput_leaves_out_warmup_and_validation(tmp_path):
    cb = TokensPerSecond(every_n_steps=5, warmup_steps=3)
    _fit(tmp_path, _model(), {"_target_": "torch.optim.SGD", "lr": 1.0}, steps=12,
         callbacks=[cb], val_check_interval=6)  # fmt: skip
    # 12 steps - 3 warm-up - the first step after validation (no start time for it)
    assert cb.steady_steps == 12 - 3 - 1
    assert cb.steady_tokens == cb.steady_steps * 4 * 6
    assert cb.steady_tokens_per_sec > 0
    # validation timed on its own: 2 validations x 3 windows of 4 x 6 tokens, the sanity check left out
    assert cb.val_tokens == 2 * 3 * 4 * 6 and cb.val_tokens_per_sec > 0


class _SGDSubclass(torch.optim.SGD):
    """Same update as SGD, but not recognised as plain SGD: clipping scales the gradients."""


@pytest.mark.parametrize("steps", [1, 2, 12])
def test_clipping_folded_into_the_learning_rate_is_the_same_update(tmp_path, steps):
    optim = {"lr": 5.0, "foreach": True}
    folded, t1 = _fit(
        tmp_path / "a", _model(), {"_target_": "torch.optim.SGD", **optim}, steps=steps
    )
    scaled, t2 = _fit(tmp_path / "b", _model(),
                      {"_target_": f"{__name__}._SGDSubclass", **optim}, steps=steps)  # fmt: skip
    for (name, p), q in zip(
        folded.model.named_parameters(), scaled.model.parameters(), strict=True
    ):
        diff = float((p - q).detach().abs().max())
        assert diff < 1e-4, (name, diff, float(p.abs().max()))
    # the scheduled learning rate is back in place after every step
    assert t1.optimizers[0].param_groups[0]["lr"] == 5.0
