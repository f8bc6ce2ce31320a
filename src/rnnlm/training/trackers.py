"""The experiment trackers a run logs to (`logger=tensorboard|csv|wandb|mlflow`, or a list of them:
`logger=[tensorboard,wandb]`), and what each one gets.

Every logger that is on gets the scalars (Lightning's `self.log`), the hyperparameters with the best
validation perplexity, and the text samples (TensorBoard: the TEXT tab; W&B: a table per sample;
MLflow: a text artifact per sample; CSV: none). `make report` reads neither: it reads
`validations.jsonl`, which every run writes (`ValidationHistory`).
"""

from __future__ import annotations

import json
import math
import netrc
import os
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from rnnlm.errors import UserError
from rnnlm.report.curves import HISTORY_FILE

EXTRAS = {"WandbLogger": ("wandb", "trackers"), "MLFlowLogger": ("mlflow", "trackers")}


def wandb_key_present() -> bool:
    """Whether W&B can log online: WANDB_API_KEY, or `wandb login`'s entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def build_loggers(group: DictConfig | None, run_name: str) -> list[Logger]:
    """The loggers of the `logger` config group, each named after the run."""
    loggers: list[Logger] = []
    for lg in (group or {}).values():
        if lg is None or "_target_" not in lg:
            continue
        kind = str(lg._target_).rsplit(".", 1)[-1]
        extra: dict[str, Any] = {}
        if "version" in lg and lg.version is None:  # TensorBoard: the run's folder
            extra["version"] = run_name
        if kind == "WandbLogger":
            if lg.get("name") is None:
                extra["name"] = run_name
            if lg.get("offline") is None:  # no key: log to the run folder, `wandb sync` it later
                extra["offline"] = not wandb_key_present()
        if kind == "MLFlowLogger":
            if lg.get("run_name") is None:
                extra["run_name"] = run_name
            if str(lg.get("tracking_uri") or "file:").startswith("file:"):
                # MLflow 3 keeps its file store working but asks for this switch to use it (its
                # database stores need SQLAlchemy 2; the sweep extra's Optuna 2 needs SQLAlchemy 1)
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if kind in EXTRAS:
            module, extra_name = EXTRAS[kind]
            try:
                __import__(module)
            except ImportError:
                raise UserError(
                    f"logger {kind} needs {module}: pip install 'rnnlm[{extra_name}]'"
                ) from None
        loggers.append(instantiate(lg, **extra))
    return loggers


def log_hparams(loggers: list[Logger], hparams: dict[str, Any]) -> None:
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):  # HPARAMS needs a metric registered with them
            lg.log_hyperparams(hparams, metrics={"val/best_ppl": math.nan})
        else:
            lg.log_hyperparams(hparams)


def log_sample(loggers: list[Logger], text: str, step: int) -> None:
    """A generated text, in each logger's own place for text."""
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):
            # Markdown: indent by four spaces so line breaks and spacing survive.
            md = "\n".join("    " + line for line in text.splitlines())
            lg.experiment.add_text("samples", md, step)
        elif isinstance(lg, WandbLogger):
            lg.log_text(key="samples", columns=["step", "text"], data=[[step, text]], step=step)
        elif isinstance(lg, MLFlowLogger):
            lg.experiment.log_text(lg.run_id, text, f"samples/step_{step:08d}.txt")


def log_final(loggers: list[Logger], metrics: dict[str, float], step: int) -> None:
    """The run's outcome (best validation and test perplexity), beside its hyperparameters."""
    finite = {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.summary.update(finite)
        elif not isinstance(lg, TensorBoardLogger):  # TensorBoard has val/best_ppl as a scalar
            lg.log_metrics(finite, step=step)


def close(loggers: list[Logger], finished: bool) -> None:
    """End each tracker's run: a W&B run left open would take the next job's logs in a multirun."""
    for lg in loggers:
        if isinstance(lg, WandbLogger) and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish(exit_code=0 if finished else 1)
        elif isinstance(lg, MLFlowLogger):
            lg.finalize("success" if finished else "failed")


class ValidationHistory(L.Callback):
    """One JSON line per validation in `<run>/validations.jsonl` (step, tokens, seconds, perplexity):
    the curves `make report` draws, whatever loggers are on. A resumed run appends to it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / HISTORY_FILE

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        m = trainer.callback_metrics
        if "val/ppl" not in m:
            return
        row = {"step": trainer.global_step, "val_ppl": float(m["val/ppl"])}
        for key, name in (
            ("train/tokens_seen", "tokens"),
            ("train/time_s", "seconds"),
            ("val/bleu", "val_bleu"),
        ):
            if key in m:
                row[name] = float(m[key])
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
