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
from rnnlm.training.callbacks import ProgressBar, TokensPerSecond
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


class _Spy(L.Callback):
    """Each step's loss beside what the progress bar and the trainer's callback metrics show then."""

    def __init__(self, bar: ProgressBar | None = None) -> None:
        self.bar = bar
        self.rows: list[tuple[float, dict, float | None]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
        shown = self.bar.get_metrics(trainer, pl_module) if self.bar else {}
        seen = trainer.callback_metrics.get("train/loss")
        self.rows.append((pl_module.step_loss.item(), shown, None if seen is None else float(seen)))


def test_progress_bar_shows_every_steps_loss_logged_only_on_logged_steps(tmp_path):
    bar = ProgressBar()
    spy = _Spy(bar)
    _fit(tmp_path, _model(), {"_target_": "torch.optim.SGD", "lr": 1.0}, steps=9,
         callbacks=[bar, spy], enable_progress_bar=True, log_every_n_steps=3,
         limit_val_batches=0)  # fmt: skip
    losses = [loss for loss, _, _ in spy.rows]
    assert len(set(losses)) == 9  # a new loss at every step
    for step, (loss, shown, seen) in enumerate(spy.rows):
        assert next(iter(shown)) == "train/loss" and shown["train/loss"] == loss
        # through self.log only on the steps the loggers record (2, 5, 8), after the step's callbacks:
        # what a callback reads then is the last such step's before this one
        last_logged = step // 3 * 3 - 1
        assert seen == (losses[last_logged] if last_logged >= 0 else None), step


def test_a_monitor_of_train_loss_gets_it_at_every_step(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    spy = _Spy()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="train/loss", every_n_train_steps=1)
    _fit(tmp_path, _model(), {"_target_": "torch.optim.SGD", "lr": 1.0}, steps=7,
         callbacks=[ckpt, spy], enable_checkpointing=True, log_every_n_steps=3)  # fmt: skip
    assert [seen for _, _, seen in spy.rows] == [loss for loss, _, _ in spy.rows]


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
        if batch_idx == self.step:
            trainer.should_stop = True


def test_a_stop_between_logged_steps_logs_that_steps_loss(tmp_path):
    def curve(name, every, callbacks, **kw):
        logger = CSVLogger(tmp_path / name, name="", version="")
        _fit(tmp_path / f"{name}-data", _model(), {"_target_": "torch.optim.SGD", "lr": 1.0},
             steps=12, logger=logger, log_every_n_steps=every, callbacks=callbacks,
             limit_val_batches=0, **kw)  # fmt: skip
        rows = csv.DictReader((tmp_path / name / "metrics.csv").read_text().splitlines())
        return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}

    every_step = curve("all", 1, [])
    # step 6 is not one that the loggers record by themselves
    stopped = curve("stopped", 3, [_StopAt(6)])
    assert sorted(stopped) == [2, 5, 6]
    assert all(stopped[s] == every_step[s] for s in stopped)
    # asked to stop before min_steps: the run goes on, the loggers record every step from then on
    late = curve("late", 3, [_StopAt(3)], min_steps=7)
    assert sorted(late)[:5] == [2, 3, 4, 5, 6]
    assert all(late[s] == every_step[s] for s in late)
