"""The LightningModule: the Lightning glue where a plain language model meets the token stream.

The steps, the logging and the hooks live here; each rule they apply has a home of its own:
- training/streams.py: the carried hidden state (truncated BPTT by hand) and its exact resume;
- training/optim.py: the optimiser and scheduler, clipping (into the lr for plain SGD), lr scaling;
- training/nt_asgd.py: NT-ASGD and its averaged weights for evaluation and checkpoints;
- data/datamodule.py (`LMDataModule.lr_scale`): variable-length BPTT's per-window learning rate.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import Tensor

from rnnlm.data.tokenizers import CHAR_LEVEL, Tokenizer, tokenizer_from_dict
from rnnlm.inference.checkpoint import FORMAT
from rnnlm.models import num_parameters
from rnnlm.training import optim as optim_lib
from rnnlm.training.callbacks import ProgressBar
from rnnlm.training.metrics import LN2, TokenMeanLoss, perplexity
from rnnlm.training.nt_asgd import AverageSwap, average_into_state_dict, averaging, find_nt_asgd
from rnnlm.training.optim import NonFiniteError
from rnnlm.training.streams import STAGES, Streams

log = logging.getLogger(__name__)

__all__ = ["LMModule", "NonFiniteError"]


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
        self.model = self.build_model(model, vocab_size)
        # `compile=true`: torch.compile the forward + loss (the model's own modules and weights are
        # untouched, so checkpoints are the same); the first steps pay for the compilation.
        self._nll = torch.compile(self.model.nll) if compile else self.model.nll
        self.tokenizer = tokenizer
        self.config = config or {}  # the composed run config, kept in checkpoints for eval/resume
        self.command: str | None = None  # the command line that trained it (the Hub model card's)
        # One token, batch 1: the model summary's FLOPs column is the forward cost per token.
        self.example_input_array = torch.zeros(1, 1, dtype=torch.long)
        self.char_level = tokenizer is not None and tokenizer.kind in CHAR_LEVEL
        # A split's loss over validation or test. Training logs each step's own loss instead (the
        # "train_" one is not updated, and stays so the model summary's module count is unchanged).
        self.mean_loss = torch.nn.ModuleDict({f"{s}_": TokenMeanLoss() for s in STAGES})
        self.streams = Streams()  # the carried hidden states and the stream position (resume)
        self.best_val_loss = math.inf
        self.tokens_seen = (
            0  # training target tokens over the whole run, all ranks (kept on resume)
        )
        self.tokens_trained_here = 0  # ... in this process's lifetime, for throughput
        # Wall time spent fitting, over the whole run (kept on resume): the x-axis of `train/time_s`.
        self.fit_seconds_before = 0.0
        self._fit_started: float | None = None
        self._lr_scale = 1.0  # this step's learning-rate factor (variable-length BPTT)
        self.step_loss: Tensor | None = None  # the last training step's loss (the progress bar's)
        self._trained: list[torch.nn.Parameter] = []  # the optimiser's (configure_optimizers)
        self._loss_every_step = True  # through `self.log` at every step (on_train_start decides)
        self.average = AverageSwap()  # NT-ASGD's averaged weights, swapped in to evaluate
        self.corpus_fingerprint: str | None = (
            None  # the text trained on (set by train(), checked on resume)
        )

    task = "lm"  # what the checkpoints hold (a translation module: "translation")

    def build_model(self, model: dict, vocab_size: int) -> torch.nn.Module:
        """The model from its plain config dict (a subclass builds another kind of model)."""
        return instantiate(model, vocab_size=vocab_size)

    def load_tokenizer(self, state: dict) -> Any:
        """The tokenizer from its checkpoint dict (a translation module's holds two vocabularies)."""
        return tokenizer_from_dict(state)

    @property
    def num_parameters(self) -> int:
        return num_parameters(self.model)

    def batch_tokens(self, batch: tuple[Tensor, Tensor]) -> int:
        """Target tokens in a batch: what tokens/s counts."""
        return batch[1].numel()

    # -- the step ------------------------------------------------------------------------------------
    def _step(self, stage: str, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        """The window's loss (mean per token when training, summed otherwise) and its token count.

        The model computes the loss itself (`RNNLM.nll`): with the full softmax that is the fused,
        chunked linear + cross-entropy, which never builds the (B*T, V) logits.
        """
        x, y = batch  # (B, T) inputs and targets
        reduction = "mean" if stage == "train" else "sum"
        loss, hidden = self._nll(x, y, self.streams.hidden[stage], reduction)
        self.streams.carry(stage, hidden)
        n = y.numel()
        if stage != "train":
            self.mean_loss[f"{stage}_"].update(loss, n)
        return loss, n

    def forward(self, x: torch.Tensor, hidden: Any = None) -> tuple[torch.Tensor, Any]:
        """The model's forward: x (B, T) token ids -> logits (B, T, V), new hidden state."""
        return self.model(x, hidden)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, n = self._step("train", batch)
        self.step_loss = loss.detach()
        if self.hparams.detect_nonfinite:
            value = float(self.step_loss)  # one host sync, as a bool(torch.isfinite(...)) would be
            if not math.isfinite(value):
                raise NonFiniteError(self._nonfinite_message(f"non-finite loss ({value})"))
        world = self.trainer.world_size
        self.tokens_seen += n * world
        self.streams.windows_done += 1
        self.tokens_trained_here += n * world
        if self._loss_every_step:  # else in on_train_batch_end, on the steps the loggers record
            self.log("train/loss", self.step_loss, prog_bar=True)
        if self._writes_logs():
            self.log("train/ppl", self.step_loss.exp(), prog_bar=True)
            if self.char_level:
                self.log("train/bpc", self.step_loss / LN2)
        # AR/TAR (model.ar_alpha, model.tar_beta): minimised with the loss, not part of train/loss.
        penalty = self.model.pop_penalty() if hasattr(self.model, "pop_penalty") else None
        return loss if penalty is None else loss + penalty

    def _writes_logs(self) -> bool:
        """Whether the loggers record this step (every `trainer.log_every_n_steps`).

        Each `self.log` costs Lightning a few tenths of a millisecond (most of it `_ResultMetric.to`
        walking the metric's attributes), 2-3% of a small model's step: the metrics are logged on the
        steps the loggers record. The progress bar shows every step's `train/loss`, which it reads from
        `step_loss` (callbacks.ProgressBar) rather than through `self.log`.
        """
        connector = getattr(self._trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def on_train_start(self) -> None:
        # `train/loss` goes through `self.log` at every step where something else reads it then: a
        # callback that monitors it (checkpoint, early stopping) or a progress bar other than rnnlm's.
        bar = self.trainer.progress_bar_callback
        self._loss_every_step = (bar is not None and not isinstance(bar, ProgressBar)) or any(
            getattr(cb, "monitor", None) == "train/loss" for cb in self.trainer.callbacks
        )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # After the step's callbacks: the loggers also record a step where one of them stops the run
        # (time budget, a signal), and its train/loss is that step's, as when it was logged every step.
        if not self._loss_every_step and self._writes_logs():
            self.log("train/loss", self.step_loss, prog_bar=True)

    # Scores in float32 whatever the training precision: a bf16-mixed run's validation and test
    # perplexities are then the ones `src/eval.py` gives for its checkpoint, and comparable across runs.
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        with torch.autocast(self.device.type, enabled=False):
            self._step("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        with torch.autocast(self.device.type, enabled=False):
            self._step("test", batch)

    # -- epoch boundaries: reset the carried state, log split-level metrics --------------------------
    def on_train_epoch_start(self) -> None:
        self.streams.reset("train")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.streams.apply_resume(self.global_rank, self.trainer.world_size, self.device)
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        scale = getattr(datamodule, "lr_scale", None)
        self._lr_scale = scale(batch) if scale is not None else 1.0

    def run_totals(self) -> dict[str, int]:
        """What result.json counts: optimizer steps, finished epochs, training tokens (all ranks)."""
        return {
            "steps": self.global_step,
            "epochs": self.current_epoch,
            "tokens_seen": self.tokens_seen,
            "tokens_trained_here": self.tokens_trained_here,
        }

    def on_train_end(self) -> None:
        # Under trainer.strategy=ddp_spawn the launching process gets rank 0's callback_metrics back,
        # not its loop counters or this module's attributes: leave the totals there for run.py. Not
        # logged, so they draw no curves in TensorBoard; int64, as float32 rounds counts past 2**24.
        self.trainer.callback_metrics.update(
            {f"run/{key}": torch.tensor(value) for key, value in self.run_totals().items()}
        )

    # -- NT-ASGD: evaluate with the averaged weights once averaging has started ----------------------
    def _averager(self) -> Any:
        return averaging(self.trainer.optimizers) if self._trainer is not None else None

    def _swap_in_average(self) -> bool:
        if self._trainer is None:
            return False
        return self.average.swap_in(self.trainer.optimizers, self.model.parameters())

    @contextlib.contextmanager
    def evaluation_weights(self) -> Iterator[None]:
        """The weights validation scores (NT-ASGD's average once it has started) for the duration: what
        the training-time text samples are drawn from, after validation has put the live ones back."""
        swapped_here = self._swap_in_average()
        try:
            yield
        finally:
            if swapped_here:
                self.average.swap_back()

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    def fit_seconds(self) -> float:
        """Seconds spent fitting over the whole run: earlier attempts' and this one's so far."""
        here = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.fit_seconds_before + here

    def on_validation_epoch_start(self) -> None:
        self.streams.reset("val")
        self.mean_loss["val_"].reset()
        self._swap_in_average()

    def on_test_epoch_start(self) -> None:
        self.streams.reset("test")
        self.mean_loss["test_"].reset()
        self._swap_in_average()

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
        self.average.swap_back()
        if not self.trainer.sanity_checking:
            self.best_val_loss = min(self.best_val_loss, loss)
            if self.trainer.state.fn == "fit":
                optim_lib.step_plateau(self.trainer.lr_scheduler_configs, loss)
            opt = find_nt_asgd(self.trainer.optimizers)
            if opt is not None:
                if opt.observe(loss):
                    log.info(
                        "NT-ASGD: validation loss %.4f has not improved for %d validations: averaging "
                        "from step %d on (evaluation and checkpoints use the averaged weights)",
                        loss,
                        opt.param_groups[0]["nt_asgd"]["nonmono"],
                        self.global_step,
                    )
                self.log("train/averaging", float(opt.averaging))
        if math.isfinite(self.best_val_loss):
            # The metric shown next to the hyperparameters in TensorBoard's HPARAMS tab.
            self.log("val/best_ppl", perplexity(self.best_val_loss))
        self.log("train/tokens_seen", float(self.tokens_seen))
        self.log("train/time_s", self.fit_seconds())

    def on_test_epoch_end(self) -> None:
        self._log_split("test")
        self.average.swap_back()

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        total = self.trainer.estimated_stepping_batches
        embedding = getattr(self.model, "embedding", None)
        sparse = embedding.weight if getattr(embedding, "sparse", False) else None
        self._trained = list(self.parameters())  # what clipping reads, in the same order every step
        optimizer = optim_lib.build_optimizer(self.hparams.optim, self._trained, sparse, total)
        scheduler = optim_lib.build_scheduler(self.hparams.scheduler, optimizer, total)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return  # stepped in on_validation_epoch_end (optim.build_scheduler says why)
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

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
        """
        if not self.hparams.detect_nonfinite:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for p in self._trained if p.grad is not None]
        if not params:
            return
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        # One host sync (as bool(torch.isfinite(norm)) was); clip_into_lr reads the value again.
        if not math.isfinite(float(norm)):
            raise NonFiniteError(self._nonfinite_message("non-finite gradients"))
        if gradient_clip_algorithm not in (None, "norm"):  # clipping each value: Lightning's own
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        elif gradient_clip_val:
            optim_lib.clip_into_lr(optimizer, params, gradient_clip_val, norm)

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_closure: Any = None,
    ) -> None:
        # The closure (step, backward, clipping) runs inside optimizer.step(): the learning rates that
        # variable BPTT and clipping scale are put back after it.
        with optim_lib.scaled_lr(optimizer, self._lr_scale):
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

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
        attached = self._trainer is not None
        epoch_done = not attached or self.streams.windows_done >= self.trainer.num_training_batches
        checkpoint["rnnlm"] = {
            "format": FORMAT,
            "task": self.task,
            "tokenizer": self.tokenizer.to_dict() if self.tokenizer else None,
            "corpus": self.corpus_fingerprint,
            "config": self.config,
            "command": self.command,
            "best_val_loss": self.best_val_loss,
            "tokens_seen": self.tokens_seen,
            "fit_seconds": self.fit_seconds(),
            **self.streams.checkpoint_state(
                epoch_done, self.device, self.trainer.world_size if attached else 1, self.all_gather
            ),
        }
        opt = self._averager()
        if opt is not None:
            # NT-ASGD: the checkpoint's weights are the average, the live ones ride along.
            named = (
                (f"model.{name}", p)
                for name, p in self.model.named_parameters(remove_duplicate=False)
            )
            checkpoint["rnnlm"]["live_state_dict"] = average_into_state_dict(
                opt, named, checkpoint["state_dict"]
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("rnnlm", {})
        if meta.get("tokenizer"):
            self.tokenizer = self.load_tokenizer(meta["tokenizer"])
        self.best_val_loss = meta.get("best_val_loss", math.inf)
        live = meta.get("live_state_dict")
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        if live and fitting:
            checkpoint["state_dict"].update(live)  # resume training from the live weights
        self.average.weights_from_checkpoint = not fitting
        if not fitting and self._trainer is not None:
            return  # testing a checkpoint: the run's counters and stream position stay this run's
        self.tokens_seen = meta.get("tokens_seen", 0)
        self.fit_seconds_before = float(meta.get("fit_seconds", 0.0))
        windows_done = self.streams.load_checkpoint_state(meta)
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "resume_train_at"):
            datamodule.resume_train_at(windows_done, checkpoint.get("epoch"))
