"""Small callbacks: training throughput, and a text sample in TensorBoard after each validation."""

from __future__ import annotations

import logging
import math
import time

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from rnnlm.lm import LanguageModel

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
        tokens = batch[1].numel() * trainer.world_size
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
            self.val_tokens += batch[1].numel() * trainer.world_size

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_t0 is not None:
            self.val_seconds += time.perf_counter() - self._val_t0
            self._val_t0 = None


class TextSample(L.Callback):
    """After each validation, samples text from a fixed prompt and writes it to TensorBoard and the log."""

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
        lm = LanguageModel(pl_module.model, pl_module.tokenizer)
        text = lm.generate(self.prompt, self.max_new_tokens, self.temperature, seed=self.seed)
        log.info("sample at step %d:\n%s", trainer.global_step, text)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # Markdown: indent by four spaces so line breaks and spacing survive.
                md = "\n".join("    " + line for line in text.splitlines())
                logger.experiment.add_text("samples", md, trainer.global_step)
