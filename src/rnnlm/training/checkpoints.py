"""The run's two checkpoints: `best.ckpt` (lowest `val/loss`) and `last.ckpt` (where the run stands).

Lightning 2.6's ModelCheckpoint writes `last.ckpt` only when it also writes a top-k checkpoint, i.e.
when the monitored metric improved: after a validation that did not improve, `last.ckpt` stays at the
last improvement, and `resume=` would go back to it and train those steps again. Here `last.ckpt` is
the run's latest state after every validation, at the end of every epoch and at the end of the fit.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    @property
    def state_key(self) -> str:
        # The same key as ModelCheckpoint's, so checkpoints written before this class still resume
        # with their best-model bookkeeping.
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def _save_latest(self, trainer: L.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):  # else the epoch's end saves both
            self._save_latest(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_latest(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._save_latest(trainer)
