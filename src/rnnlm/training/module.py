"""The LightningModule: where a plain language model meets the token stream.

Truncated BPTT is done by hand (Lightning 2 has none): the hidden state is carried on the module from
one window to the next, detached each step, one state per stage, reset at the start of each epoch.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import Tensor

from rnnlm.checkpoint import FORMAT
from rnnlm.data.tokenizers import Tokenizer, tokenizer_from_dict
from rnnlm.errors import UserError
from rnnlm.models import detach_hidden, num_parameters
from rnnlm.training.metrics import LN2, TokenMeanLoss, perplexity

STAGES = ("train", "val", "test")
# Optimisers that take the sparse gradient of `model.sparse_embedding=true`.
SPARSE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adagrad, torch.optim.SparseAdam)


def _check_sparse_support(optimizer: torch.optim.Optimizer) -> None:
    name = type(optimizer).__name__
    if not isinstance(optimizer, SPARSE_OPTIMIZERS) or optimizer.defaults.get("fused"):
        raise UserError(
            f"model.sparse_embedding=true gives the embedding a sparse gradient, which {name}"
            f"{' (fused)' if optimizer.defaults.get('fused') else ''} cannot take: use optim=sgd "
            "(without fused) or set model.sparse_embedding=false"
        )


def _plain_sgd(optimizer: Any) -> bool:
    """SGD whose update is exactly p -= lr * grad (so scaling lr is scaling grad)."""
    optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps it
    return type(optimizer) is torch.optim.SGD and all(
        not g["momentum"]
        and not g["weight_decay"]
        and not g.get("maximize", False)
        and not g.get("differentiable", False)
        and not isinstance(g["lr"], torch.Tensor)
        for g in optimizer.param_groups
    )


class NonFiniteError(UserError):
    """The loss or the gradients became inf/NaN (trainer.detect_nonfinite=true)."""


class LMModule(L.LightningModule):
    """Trains `model` (built from its plain config dict) with mean per-token cross-entropy.

    Every constructor argument but `tokenizer` is a plain container, so checkpoints load with
    `torch.load(weights_only=True)`; the tokenizer is stored beside them as a plain dict.
    """

    def __init__(
        self,
        model: dict,
        optim: dict,
        vocab_size: int,
        scheduler: dict | None = None,
        tokenizer: Tokenizer | None = None,
        config: dict | None = None,
        detect_nonfinite: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer", "config"], logger=False)
        self.model = instantiate(model, vocab_size=vocab_size)
        # `compile=true`: torch.compile the forward + loss (the model's own modules and weights are
        # untouched, so checkpoints are the same); the first steps pay for the compilation.
        self._nll = torch.compile(self.model.nll) if compile else self.model.nll
        self.tokenizer = tokenizer
        self.config = config or {}  # the composed run config, kept in checkpoints for eval/resume
        self.char_level = tokenizer is not None and tokenizer.kind == "char"
        self.mean_loss = torch.nn.ModuleDict({f"{s}_": TokenMeanLoss() for s in STAGES})
        self.hidden: dict[str, Any] = dict.fromkeys(STAGES)
        self.best_val_loss = math.inf
        self.tokens_seen = (
            0  # training target tokens over the whole run, all ranks (kept on resume)
        )
        self.tokens_trained_here = 0  # ... in this process's lifetime, for throughput
        self.windows_done = 0  # training windows done in the current epoch
        self._resume: dict[str, Any] | None = None  # stream position restored from a checkpoint

    @property
    def num_parameters(self) -> int:
        return num_parameters(self.model)

    # -- the step ------------------------------------------------------------------------------------
    def _step(self, stage: str, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        """The window's loss (mean per token when training, summed otherwise) and its token count.

        The model computes the loss itself (`RNNLM.nll`): with the full softmax that is the fused,
        chunked linear + cross-entropy, which never builds the (B*T, V) logits.
        """
        x, y = batch  # (B, T) inputs and targets
        reduction = "mean" if stage == "train" else "sum"
        loss, hidden = self._nll(x, y, self.hidden[stage], reduction)
        self.hidden[stage] = detach_hidden(hidden)
        n = y.numel()
        nll_sum = loss.detach() * n if reduction == "mean" else loss
        self.mean_loss[f"{stage}_"].update(nll_sum, n)
        return loss, n

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, n = self._step("train", batch)
        if self.hparams.detect_nonfinite and not torch.isfinite(loss):
            raise NonFiniteError(self._nonfinite_message(f"non-finite loss ({float(loss)})"))
        self.tokens_seen += n * self.trainer.world_size
        self.windows_done += 1
        self.tokens_trained_here += n * self.trainer.world_size
        self.log("train/loss", loss, prog_bar=True)
        if self._writes_logs():
            self.log("train/ppl", loss.detach().exp(), prog_bar=True)
            if self.char_level:
                self.log("train/bpc", loss.detach() / LN2)
        return loss

    def _writes_logs(self) -> bool:
        """Whether the loggers record this step (every `trainer.log_every_n_steps`).

        Each `self.log` costs a fraction of a millisecond of Lightning bookkeeping, a few percent of a
        small model's step: the metrics that only the loggers read are logged on the steps they record.
        """
        connector = getattr(self._trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step("test", batch)

    # -- epoch boundaries: reset the carried state, log split-level metrics --------------------------
    def on_train_epoch_start(self) -> None:
        self.mean_loss["train_"].reset()
        if self._resume is None:
            self.hidden["train"] = None
            self.windows_done = 0

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._resume is not None:
            # Continuing mid-epoch from a checkpoint: the carried state of the stream, and dropout
            # masks exactly where the interrupted run stopped. (The data loaders draw their seeds from
            # their own generators, so nothing else consumes the global RNG in between.)
            self.hidden["train"] = self._resume["hidden"]
            self.windows_done = self._resume["windows_done"]
            if self._resume["rng"] is not None:
                torch.set_rng_state(self._resume["rng"])
            self._resume = None

    def on_validation_epoch_start(self) -> None:
        self.hidden["val"] = None
        self.mean_loss["val_"].reset()

    def on_test_epoch_start(self) -> None:
        self.hidden["test"] = None
        self.mean_loss["test_"].reset()

    def _log_split(self, stage: str) -> float:
        loss = float(self.mean_loss[f"{stage}_"].compute())  # summed over batches and ranks
        self.mean_loss[f"{stage}_"].reset()
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val")
        self.log(f"{stage}/ppl", perplexity(loss), prog_bar=stage == "val")
        if self.char_level:
            self.log(f"{stage}/bpc", loss / LN2)
        return loss

    def on_validation_epoch_end(self) -> None:
        loss = self._log_split("val")
        if not self.trainer.sanity_checking:
            self.best_val_loss = min(self.best_val_loss, loss)
        if math.isfinite(self.best_val_loss):
            # The metric shown next to the hyperparameters in TensorBoard's HPARAMS tab.
            self.log("val/best_ppl", perplexity(self.best_val_loss))
        self.log("train/tokens_seen", float(self.tokens_seen))

    def on_test_epoch_end(self) -> None:
        self._log_split("test")

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        params: Any = self.parameters()
        if self.model.embedding.sparse:
            # The sparse gradient in a group of its own, so the dense ones keep the multi-tensor
            # (foreach) update: torch.optim falls back to one update per tensor in a group with a
            # sparse gradient.
            sparse = self.model.embedding.weight
            params = [
                {"params": [p for p in self.parameters() if p is not sparse]},
                {"params": [sparse]},
            ]
        optimizer = instantiate(self.hparams.optim, _partial_=True)(params)
        if self.model.embedding.sparse:
            _check_sparse_support(optimizer)
        sched_cfg = dict(self.hparams.scheduler or {})
        if not sched_cfg:
            return optimizer
        interval = sched_cfg.pop("interval", "epoch")
        monitor = sched_cfg.pop("monitor", "val/loss")
        if sched_cfg.get("T_max", "unset") is None:  # cosine over the whole run
            sched_cfg["T_max"] = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = instantiate(sched_cfg, optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": monitor},
        }

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._writes_logs():
            self.log("train/lr", optimizer.param_groups[0]["lr"])

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip by the global norm, and stop on inf/NaN gradients before the optimiser step.

        A finite loss can still give non-finite gradients; stepping on them would poison the weights and
        the next checkpoint. The check reuses the norm that clipping computes anyway.

        For plain SGD (no momentum, no weight decay) the clipping factor goes into this step's learning
        rate instead of into the gradients: p - (lr * c) * g is p - lr * (c * g), without a pass over
        every gradient (`optimizer_step` puts the learning rate back).
        """
        if not self.hparams.detect_nonfinite or gradient_clip_algorithm not in (None, "norm"):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for p in self.parameters() if p.grad is not None]
        if not params:
            return
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        if not torch.isfinite(norm):
            raise NonFiniteError(self._nonfinite_message("non-finite gradients"))
        if not gradient_clip_val:
            return
        if _plain_sgd(optimizer):
            coef = min(1.0, float(gradient_clip_val) / (float(norm) + 1e-6))
            if coef < 1.0:
                for group in optimizer.param_groups:
                    group["lr"] = group["lr"] * coef
        else:
            torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_closure: Any = None,
    ) -> None:
        # The closure (step, backward, clipping) runs inside optimizer.step(); clipping may scale this
        # step's learning rate (see configure_gradient_clipping): restore the scheduled one afterwards.
        saved = [group["lr"] for group in optimizer.param_groups]
        try:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        finally:
            for group, lr in zip(optimizer.param_groups, saved, strict=True):
                group["lr"] = lr

    def _nonfinite_message(self, what: str) -> str:
        ckpt = self.trainer.checkpoint_callback
        last = getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "") or ""
        fix = "lower optim.lr or keep trainer.gradient_clip_val on"
        good = (
            f"the last good checkpoint is {last} ({fix}, then resume from it)"
            if last
            else f"no checkpoint was written yet ({fix})"
        )
        return f"{what} at step {self.global_step}: training stopped before the weights were changed; {good}"

    # -- checkpoints carry everything needed to use the model without the config ---------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        windows_done, hidden = self.windows_done, self.hidden["train"]
        if self._trainer is None or windows_done >= self.trainer.num_training_batches:
            windows_done, hidden = 0, None  # the epoch is complete: the next one starts afresh
        checkpoint["rnnlm"] = {
            "format": FORMAT,
            "tokenizer": self.tokenizer.to_dict() if self.tokenizer else None,
            "config": self.config,
            "best_val_loss": self.best_val_loss,
            "tokens_seen": self.tokens_seen,
            # Where the training stream stands, so a mid-epoch checkpoint resumes at the exact window.
            "windows_done": windows_done,
            "train_hidden": hidden,
            "rng": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("rnnlm", {})
        if meta.get("tokenizer"):
            self.tokenizer = tokenizer_from_dict(meta["tokenizer"])
        self.best_val_loss = meta.get("best_val_loss", math.inf)
        self.tokens_seen = meta.get("tokens_seen", 0)
        self._resume = {
            "windows_done": meta.get("windows_done", 0),
            "hidden": meta.get("train_hidden"),
            "rng": meta.get("rng"),
        }
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "resume_train_at"):
            datamodule.resume_train_at(self._resume["windows_done"])
