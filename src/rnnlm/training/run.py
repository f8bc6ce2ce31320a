"""`train(cfg)`: compose data, model, trainer, callbacks and loggers from a Hydra config and fit."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from rnnlm.errors import UserError
from rnnlm.training.module import LMModule

log = logging.getLogger(__name__)

# Overrides that say where or how to run, not what is trained: left out of TensorBoard run names.
_NOT_IN_RUN_NAME = ("hydra.", "paths.", "resume", "trainer", "callbacks", "logger", "debug")


def run_name(overrides: list[str]) -> str:
    """TensorBoard run name from the job's overrides, e.g. `model=lstm,optim=sgd`."""
    keep = [o.lstrip("+~") for o in overrides if not o.lstrip("+~").startswith(_NOT_IN_RUN_NAME)]
    name = ",".join(sorted(keep)) or "default"
    return re.sub(r"[^\w=,.+\-]", "_", name)[:200]


def _hydra_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_launch(cfg: DictConfig) -> None:
    """Refuse subprocess DDP inside a Hydra multirun: every rank would re-run the whole sweep."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    if _is_multirun() and strategy.startswith("ddp") and "spawn" not in strategy:
        raise UserError(
            f"trainer.strategy={strategy} inside a multirun (-m) would make every rank re-run the whole "
            "sweep: run multi-process jobs one at a time without -m, or use trainer.strategy=ddp_spawn, "
            "or hydra/launcher=slurm so SLURM starts the ranks"
        )


def _instantiate_group(group: DictConfig | None, **kwargs: Any) -> list[Any]:
    """Each `_target_` entry of a group like `callbacks:` or `logger:`, in order."""
    if not group:
        return []
    return [instantiate(c, **kwargs) for c in group.values() if c is not None and "_target_" in c]


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's hyperparameters as flat scalars for TensorBoard's HPARAMS tab."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    keep = {k: resolved[k] for k in ("data", "model", "optim", "scheduler", "seed") if k in resolved}
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "_target_":
                    walk(f"{prefix}{k}/" if prefix or k else k, v)
        else:
            flat[prefix.rstrip("/")] = node if isinstance(node, int | float | str | bool) else str(node)

    walk("", keep)
    return flat


def train(cfg: DictConfig) -> float:
    """Fit, test the best checkpoint, print a summary; return the best validation perplexity."""
    check_launch(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    tokenizer = datamodule.load()

    config = OmegaConf.to_container(cfg, resolve=True)
    module = LMModule(
        model=config["model"],
        optim=config["optim"],
        scheduler=config.get("scheduler") or None,
        vocab_size=tokenizer.vocab_size,
        tokenizer=tokenizer,
        config=config,
    )
    log.info("model: %s, %s parameters", cfg.model.cell, f"{module.num_parameters:,}")

    callbacks = _instantiate_group(cfg.get("callbacks"))
    loggers: list[Logger] = []
    for lg in (cfg.get("logger") or {}).values():
        if lg is None or "_target_" not in lg:
            continue
        extra = {"version": run_name(_hydra_overrides())} if "version" in lg and lg.version is None else {}
        loggers.append(instantiate(lg, **extra))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.log_hyperparams(_flat_hparams(cfg), metrics={"val/best_ppl": math.nan})
        else:
            lg.log_hyperparams(_flat_hparams(cfg))

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    best_val_ppl = math.exp(min(module.best_val_loss, 700.0))
    test_ppl = math.nan
    if cfg.get("test", True) and trainer.state.status.value == "finished":
        ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt or None, verbose=False)
        if results:
            test_ppl = results[0].get("test/ppl", math.nan)
    _print_summary(cfg, trainer, best_val_ppl, test_ppl)
    return best_val_ppl


def _print_summary(cfg: DictConfig, trainer: L.Trainer, best_val_ppl: float, test_ppl: float) -> None:
    if trainer.global_rank != 0:
        return
    out = Path(cfg.paths.output_dir)
    lines = [
        f"output folder:      {out}",
        f"best val perplexity: {best_val_ppl:.3f}",
        f"test perplexity:     {test_ppl:.3f} (best checkpoint)",
    ]
    if cfg.data.tokenizer == "char" and math.isfinite(best_val_ppl):
        lines.append(f"best val bpc:        {math.log2(best_val_ppl):.4f}")
    if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path:
        lines.append(f"best checkpoint:     {trainer.checkpoint_callback.best_model_path}")
    lines.append(f"look at the run:     tensorboard --logdir {out / 'tensorboard'} --host 127.0.0.1")
    print("\n".join(lines), flush=True)
