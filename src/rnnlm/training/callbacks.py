"""Small callbacks: training throughput, and a text sample in TensorBoard after each validation."""

from __future__ import annotations

import logging
import time

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from rnnlm.lm import LanguageModel

log = logging.getLogger(__name__)


class TokensPerSecond(L.Callback):
    """Logs `train/tokens_per_sec`: target tokens per wall-clock second, over `every_n_steps` steps."""

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self._t0: float | None = None
        self._tokens = 0
        self._steps = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._tokens, self._steps = None, 0, 0  # validation time is not training time

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self._tokens += batch[1].numel() * trainer.world_size
        self._steps += 1
        if self._steps >= self.every_n_steps:
            elapsed = time.perf_counter() - self._t0
            pl_module.log("train/tokens_per_sec", self._tokens / max(elapsed, 1e-9))
            self._t0, self._tokens, self._steps = time.perf_counter(), 0, 0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._tokens, self._steps = None, 0, 0


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
