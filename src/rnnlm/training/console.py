"""What a run prints for its user: the resume summary, the end-of-run summary, how to resume after an
interruption. Rank 0 only."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from rnnlm.data.tokenizers import CHAR_LEVEL
from rnnlm.training.record import RunRecord
from rnnlm.training.run_folder import launch_rank


class _NoAdvert(logging.Filter):
    """Drops Lightning's tip to install litlogger, printed at every Trainer start; nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_lightning() -> None:
    """Keep Lightning's start-up lines that say something about this run (devices, validation)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdvert) for f in logger.filters):
        logger.addFilter(_NoAdvert())


def print_interrupted(cfg: DictConfig, reason: str) -> None:
    if launch_rank() != 0:
        return
    out = Path(cfg.paths.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    lines = [f"{reason}: the run stopped before it finished", f"output folder:      {out}"]
    if last.is_file():
        lines += [
            f"last checkpoint:    {last}",
            f"resume it with:     python src/train.py resume={out}",
        ]
    else:
        lines.append("last checkpoint:    none was written yet: the run starts again from scratch")
    print("\n".join(lines), file=sys.stderr, flush=True)


def print_resuming(cfg: DictConfig, record: RunRecord, ckpt: dict, ckpt_path: str) -> None:
    """The start-up summary of a resume: which run, how its attempts went, which checkpoint."""
    if launch_rank() != 0:
        return
    attempts = record.data.get("attempts") or []
    # an attempt still marked running is not running now (this process holds the folder): killed
    history = ", ".join(
        "killed" if a.get("status") == "running" else str(a.get("status")) for a in attempts
    )
    history = history or "none recorded"
    print(
        f"resuming run:       {cfg.paths.output_dir} (attempts so far: {history})\n"
        f"from checkpoint:    {ckpt_path} (epoch {ckpt.get('epoch', 0)}, "
        f"step {ckpt.get('global_step', 0)})",
        flush=True,
    )


def print_summary(
    cfg: DictConfig,
    trainer: L.Trainer,
    best_val_ppl: float,
    test_ppl: float,
    translation: dict[str, float] | None = None,
) -> None:
    if trainer.global_rank != 0:
        return
    out = Path(cfg.paths.output_dir)
    lines = [
        f"output folder:      {out}",
        f"best val perplexity: {best_val_ppl:.3f}",
        f"test perplexity:     {test_ppl:.3f} (best checkpoint)"
        if math.isfinite(test_ppl)
        else "test perplexity:     not measured ("
        + ("test=false" if not cfg.get("test", True) else "the fit did not finish")
        + ")",
    ]
    if cfg.data.tokenizer in CHAR_LEVEL and math.isfinite(best_val_ppl) and not translation:
        lines.append(f"best val bpc:        {math.log2(best_val_ppl):.4f}")
    if translation:
        lines.append(f"best val BLEU:       {translation.get('best_val_bleu', math.nan):.2f}")
        if "test_bleu" in translation:
            lines.append(
                f"test BLEU / chrF:    {translation['test_bleu']:.2f} / "
                f"{translation['test_chrf']:.2f} (best checkpoint)"
            )
    if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path:
        lines.append(f"best checkpoint:     {trainer.checkpoint_callback.best_model_path}")
    lines.append(
        f"look at the run:     tensorboard --logdir {out / 'tensorboard'} --host 127.0.0.1"
    )
    print("\n".join(lines), flush=True)
