"""Ctrl-C and SIGTERM: stop at the end of a training step with `last.ckpt` saved, so the run resumes
exactly, and exit 130 / 143 (rnnlm.errors) instead of Lightning's 1 (Ctrl-C) and 0 (SIGTERM).

A second Ctrl-C stops at once (KeyboardInterrupt, which Lightning turns into a stop of its own). Under
DDP the ranks would have to agree on the step, so there Lightning's own handling stays: SIGTERM stops
all ranks at a step boundary, Ctrl-C at once; the run keeps its last periodic checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import lightning as L

from rnnlm.errors import RunInterrupted

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Records SIGINT/SIGTERM for the life of a run (a context manager around `train`).

    While `graceful` (a single-process fit is running) the first signal only asks the run to stop at
    the next step boundary; otherwise it raises KeyboardInterrupt, as Python does for Ctrl-C.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.graceful = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        name = signal.Signals(signum).name
        if first and self.graceful:
            print(
                f"\n{name}: stopping at the end of this training step, with last.ckpt saved (a "
                "second signal stops at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        if signum == signal.SIGTERM and signal.getsignal(signum) != self.handle:
            return  # Lightning's handler called this one: it stops all ranks at a step boundary
        raise KeyboardInterrupt


class StopAtStepBoundary(L.Callback):
    """Acts on a recorded signal at the end of a training step: saves last.ckpt, then stops the run."""

    def __init__(self, signals: StopSignals) -> None:
        self.signals = signals

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signals.graceful = trainer.world_size == 1
        if self.signals.graceful and threading.current_thread() is threading.main_thread():
            # Lightning's own SIGTERM handler (installed for the fit) would stop mid-validation,
            # without a checkpoint; Lightning puts back the handler it found when the fit ends.
            signal.signal(signal.SIGTERM, self.signals.handle)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signals.graceful = False

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, err: BaseException
    ) -> None:
        self.signals.graceful = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self.signals.signum is None or not self.signals.graceful:
            return
        self.signals.graceful = False
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.dirpath and ckpt.save_last:
            path = os.path.join(ckpt.dirpath, ckpt.CHECKPOINT_NAME_LAST + ckpt.FILE_EXTENSION)
            trainer.save_checkpoint(path, weights_only=False)
            log.info("saved %s at step %d", path, trainer.global_step)
        raise RunInterrupted(self.signals.signum)
