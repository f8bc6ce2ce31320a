"""Small callbacks: training throughput, a text sample in TensorBoard after each validation, and fitting
a run's schedules to a time budget."""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar, Timer
from lightning.pytorch.utilities import rank_zero_only

from rnnlm.errors import UserError
from rnnlm.inference.lm import LanguageModel
from rnnlm.training.nt_asgd import find_nt_asgd
from rnnlm.training.trackers import log_sample

log = logging.getLogger(__name__)


class TokensPerSecond(L.Callback):
    """Logs `train/tokens_per_sec`: target tokens per wall-clock second, over `every_n_steps` steps.

    It also keeps the steady-state figure of the whole run (`steady_tokens_per_sec`, written to
    result.json): training steps after the first `warmup_steps`, each timed from the end of the step
    before it (data loading, forward, backward, update, logging), validation and checkpointing left out.
    Validation is timed on its own (`val_tokens_per_sec`, sanity checks left out): how much of a time
    budget the validations take.
    """

    def __init__(self, every_n_steps: int = 50, warmup_steps: int = 10) -> None:
        self.every_n_steps = every_n_steps
        self.warmup_steps = warmup_steps
        self._t0: float | None = None
        self._tokens = 0
        self._steps = 0
        self._last_end: float | None = None
        self._batches = 0
        self.steady_tokens = 0
        self.steady_seconds = 0.0
        self.steady_steps = 0
        self.step_seconds: list[float] = []  # each steady-state step's time
        self.val_tokens = 0
        self.val_seconds = 0.0
        self._val_t0: float | None = None

    @property
    def steady_tokens_per_sec(self) -> float:
        return self.steady_tokens / self.steady_seconds if self.steady_seconds > 0 else math.nan

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._tokens, self._steps = None, 0, 0  # validation time is not training time
        self._last_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        now = time.perf_counter()
        tokens = pl_module.batch_tokens(batch) * trainer.world_size
        self._batches += 1
        if self._last_end is not None and self._batches > self.warmup_steps:
            self.steady_tokens += tokens
            self.steady_seconds += now - self._last_end
            self.steady_steps += 1
            self.step_seconds.append(now - self._last_end)
        self._last_end = now
        self._tokens += tokens
        self._steps += 1
        if self._steps >= self.every_n_steps:
            elapsed = now - self._t0
            pl_module.log("train/tokens_per_sec", self._tokens / max(elapsed, 1e-9))
            self._t0, self._tokens, self._steps = time.perf_counter(), 0, 0

    @property
    def val_tokens_per_sec(self) -> float:
        return self.val_tokens / self.val_seconds if self.val_seconds > 0 else math.nan

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._tokens, self._steps = None, 0, 0
        self._last_end = None
        self._val_t0 = None if trainer.sanity_checking else time.perf_counter()

    def on_validation_batch_end(  # noqa: D102
        self,
        trainer,
        pl_module,
        outputs,
        batch,
        batch_idx,
        dataloader_idx=0,  # noqa: ANN001
    ) -> None:
        if self._val_t0 is not None:
            self.val_tokens += pl_module.batch_tokens(batch) * trainer.world_size

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_t0 is not None:
            self.val_seconds += time.perf_counter() - self._val_t0
            self._val_t0 = None


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar without `v_num`: the logger's version, which for rnnlm's
    TensorBoard runs is the run's name, cut to its last four characters ("ault" of "default").

    `train/loss` is the last training step's, read from the module's `step_loss`: LMModule logs it
    through `self.log` only on the steps the loggers record (LMModule._writes_logs says why).
    """

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        step_loss = getattr(pl_module, "step_loss", None)
        if step_loss is None:
            return metrics
        # First, as when it was logged at every step (the first metric of the first step).
        rest = {k: v for k, v in metrics.items() if k != "train/loss"}
        return {"train/loss": step_loss.item(), **rest}


class TextSample(L.Callback):
    """After each validation, samples text from a fixed prompt and writes it to the log and to every
    tracker that is on (rnnlm.training.trackers.log_sample)."""

    def __init__(
        self, prompt: str = "\n", max_new_tokens: int = 200, temperature: float = 0.8, seed: int = 0
    ) -> None:
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or pl_module.tokenizer is None:
            return
        if getattr(pl_module, "task", "lm") != "lm":  # a translation module logs its translations
            return
        lm = LanguageModel(pl_module.model, pl_module.tokenizer)
        weights = getattr(pl_module, "evaluation_weights", contextlib.nullcontext)
        with weights():  # the weights validation scored (NT-ASGD's average), not the live ones
            text = lm.generate(self.prompt, self.max_new_tokens, self.temperature, seed=self.seed)
        log.info("sample at step %d:\n%s", trainer.global_step, text)
        log_sample(trainer.loggers, text, trainer.global_step)


class TimeBudget(L.Callback):
    """With `trainer.max_time`, re-plans the run's length from its own measured speed as it goes, so that
    what is planned over the whole run ends with the time budget rather than before it or after it.

    A run given a time budget is planned in steps (a cosine decay over `trainer.max_steps`, NT-ASGD's
    `average_after` deadline), from an estimate of the speed. On a machine whose speed drifts by 10% the
    plan ends early (budget left unused) or `max_time` cuts it (the decay unfinished, few averaged
    steps). From the first validation on (its duration measured), every `every_n_steps` steps this
    estimates the steps that fit in the time left, after the validations still to come and `reserve_s`,
    and moves `max_steps`, the end of a whole-run `CosineAnnealingLR` and NT-ASGD's deadline (until
    averaging has started) to that step. At that step it stops the run, which Lightning validates once
    more, so the last model is scored. Off unless `enabled` (`callbacks.time_budget.enabled=true`).
    """

    def __init__(
        self, enabled: bool = False, every_n_steps: int = 50, reserve_s: float = 5.0
    ) -> None:
        if every_n_steps < 1:
            raise UserError(f"callbacks.time_budget.every_n_steps={every_n_steps} must be >= 1")
        self.enabled = enabled
        self.every_n_steps = every_n_steps
        self.reserve_s = reserve_s
        self.total: int | None = None  # the planned number of optimizer steps
        self.replans = 0
        self._timer: Timer | None = None
        self._val_seconds = 0.0
        self._validations = 0
        self._val_t0: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        self._timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if self._timer is None:
            raise UserError(
                "callbacks.time_budget.enabled=true needs a budget: set trainer.max_time (e.g. "
                "trainer.max_time=00:00:15:00) or callbacks.time_budget.enabled=false"
            )
        if self.total is not None:
            # resumed: go on with the plan so far (a whole-run cosine's T_max follows it)
            trainer.fit_loop.epoch_loop.max_steps = self.total
            return
        total = trainer.estimated_stepping_batches
        self.total = int(total) if math.isfinite(total) else None

    def state_dict(self) -> dict:
        # In checkpoints, so a resumed run goes on with its plan and its measured validation time.
        return {
            "total": self.total,
            "replans": self.replans,
            "val_seconds": self._val_seconds,
            "validations": self._validations,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.total = state_dict.get("total")
        self.replans = state_dict.get("replans", 0)
        self._val_seconds = state_dict.get("val_seconds", 0.0)
        self._validations = state_dict.get("validations", 0)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._timer is not None and not trainer.sanity_checking:
            self._val_t0 = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_t0 is not None:
            self._val_seconds += time.monotonic() - self._val_t0
            self._validations += 1
            self._val_t0 = None
            self._replan(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self._timer is None or self.total is None:
            return
        step = trainer.global_step
        if step >= self.total:
            trainer.should_stop = True  # Lightning validates the last model before it stops
        elif step % self.every_n_steps == 0:
            self._replan(trainer)

    def _replan(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        if self._timer is None or self.total is None or not self._validations or step < 1:
            return
        if trainer.should_stop or step >= self.total:  # stopping: this plan is the run's
            return
        elapsed = self._timer.time_elapsed("train")
        left = self._timer.time_remaining("train") or 0.0
        train_s = elapsed - self._val_seconds
        if train_s <= 0:
            return
        step_s = train_s / step  # this run's own speed, start-up and warm-up steps included
        val_s = self._val_seconds / self._validations
        val_per_step = self._validations / step
        # time left = n * step_s + (n * val_per_step + 1) * val_s + reserve: the n steps that fit, the
        # validations they bring, and the last one at the stop
        n = (left - val_s - self.reserve_s) / (step_s + val_per_step * val_s)
        total = step + max(1, int(n))
        total = int(
            trainer.strategy.broadcast(torch.tensor(total), src=0)
        )  # every rank stops together
        if total != self.total:
            self._apply(trainer, total)

    def _apply(self, trainer: L.Trainer, total: int) -> None:
        old, self.total = self.total, total
        self.replans += 1
        trainer.fit_loop.epoch_loop.max_steps = total
        for config in trainer.lr_scheduler_configs:
            sched = config.scheduler
            # a cosine over the whole run (scheduler.T_max=null): it ends with the new plan, continuing
            # from today's learning rate (torch's recursive form takes a new T_max smoothly)
            if isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) and sched.T_max == old:
                sched.T_max = total
        opt = find_nt_asgd(trainer.optimizers)
        if opt is not None and not opt.averaging:
            opt.plan(total)
        log.debug("time budget: %d -> %d steps (at step %d)", old, total, trainer.global_step)


def steady_throughput(trainer: L.Trainer) -> dict[str, Any]:
    """Training tokens/s after the warm-up steps, validation left out (from the TokensPerSecond callback)."""
    for cb in trainer.callbacks:
        if isinstance(cb, TokensPerSecond) and cb.steady_steps:
            return {
                "steady_tokens_per_sec": cb.steady_tokens_per_sec,
                "steady_steps": cb.steady_steps,
                "steady_step_ms_median": 1000 * statistics.median(cb.step_seconds),
                "warmup_steps": cb.warmup_steps,
                "val_tokens_per_sec": cb.val_tokens_per_sec if cb.val_tokens else None,
            }
    return {}
