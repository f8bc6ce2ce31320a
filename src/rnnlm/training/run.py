"""`train(cfg)`: compose data, model, trainer, callbacks and loggers from a Hydra config and fit."""

from __future__ import annotations

import ctypes
import gc
import logging
import math
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, ListConfig, OmegaConf

from rnnlm.cli import CONF_DIR, user_message
from rnnlm.config_check import validate_overrides
from rnnlm.data.tokenizers import CHAR_LEVEL
from rnnlm.errors import UserError
from rnnlm.training.callbacks import TokensPerSecond
from rnnlm.training.checkpoint_io import AtomicCheckpointIO
from rnnlm.training.metrics import perplexity
from rnnlm.training.module import LMModule
from rnnlm.training.record import RunRecord
from rnnlm.training.resume import find_resume, load_run_config

log = logging.getLogger(__name__)

# Overrides that say where or how to run, not what is trained: left out of TensorBoard run names.
_NOT_IN_RUN_NAME = (
    "hydra.",
    "paths.",
    "resume",
    "trainer",
    "callbacks",
    "logger",
    "debug",
    "compile",
)


def run_name(overrides: list[str]) -> str:
    """TensorBoard run name from the job's overrides, e.g. `model=lstm,optim=sgd`."""
    keep = [o.lstrip("+~") for o in overrides if not o.lstrip("+~").startswith(_NOT_IN_RUN_NAME)]
    name = ",".join(sorted(keep)) or "default"
    return re.sub(r"[^\w=,.+\-]", "_", name)[:200]


def _run_overrides(out_dir: Path) -> list[str]:
    """The overrides the run was started with (read back from its folder when it is resumed)."""
    saved = out_dir / ".hydra" / "overrides.yaml"
    if saved.is_file():
        return [str(o) for o in OmegaConf.load(saved)]
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_launch(cfg: DictConfig) -> None:
    """Refuse subprocess DDP inside a Hydra multirun: every rank would re-run the whole sweep.

    Allowed in a task that srun started (hydra/launcher=slurm, tasks_per_node = GPUs): SLURM starts
    one process per rank, each runs this one job, and Lightning takes the ranks from SLURM.
    """
    from lightning.fabric.plugins.environments import SLURMEnvironment

    strategy = str(cfg.trainer.get("strategy", "auto"))
    what = f"trainer.strategy={strategy}"
    if strategy == "auto":  # Lightning picks subprocess DDP for more than one device or node
        devices = _device_count(cfg.trainer.get("devices", "auto"), cfg.trainer.get("accelerator"))
        nodes = int(cfg.trainer.get("num_nodes", 1) or 1)
        if devices > 1 or nodes > 1:
            strategy = "ddp"
            what = f"trainer.devices={cfg.trainer.get('devices')} (Lightning then starts DDP processes)"
    subprocess_ranks = strategy.startswith(("ddp", "fsdp", "deepspeed")) and "spawn" not in strategy
    if _is_multirun() and subprocess_ranks and not SLURMEnvironment.detect():
        raise UserError(
            f"{what} inside a multirun (-m) would make every rank re-run the whole "
            "sweep: run multi-process jobs one at a time without -m, or use trainer.strategy=ddp_spawn, "
            "or hydra/launcher=slurm so SLURM starts the ranks"
        )


def _device_count(devices: Any, accelerator: Any) -> int:
    """How many devices `trainer.devices` asks for ('auto' and -1: every GPU, if GPUs are used)."""
    if isinstance(devices, list | ListConfig):
        return len(devices)
    try:
        if int(devices) >= 0:
            return int(devices)
    except (TypeError, ValueError):  # "auto", None, or GPU ids as "0,1"
        pass
    if str(accelerator) == "cpu":
        return 1
    import torch

    return max(torch.cuda.device_count(), 1)


def _instantiate_group(group: DictConfig | None, **kwargs: Any) -> list[Any]:
    """Each `_target_` entry of a group like `callbacks:` or `logger:`, in order."""
    if not group:
        return []
    return [instantiate(c, **kwargs) for c in group.values() if c is not None and "_target_" in c]


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's hyperparameters as flat scalars for TensorBoard's HPARAMS tab."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    keep = {
        k: resolved[k] for k in ("data", "model", "optim", "scheduler", "seed") if k in resolved
    }
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "_target_":
                    walk(f"{prefix}{k}/" if prefix or k else k, v)
        else:
            flat[prefix.rstrip("/")] = (
                node if isinstance(node, int | float | str | bool) else str(node)
            )

    walk("", keep)
    return flat


def keep_large_blocks_in_heap() -> None:
    """Let glibc reuse freed blocks of up to 64 MB instead of unmapping them (Linux only).

    By default glibc hands large freed blocks back to the kernel and the next step's allocation of the
    same size page-faults them in again, zero-filled: for a word-level model that is every step's fresh
    output-layer gradient (13,777 x 200 floats, 11 MB), some 2,000 page faults per step.
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def train(cfg: DictConfig) -> float:
    """Fit, test the best checkpoint, print a summary; return the best validation perplexity.

    With `resume=<run folder | checkpoint | latest>` the run continues from its last checkpoint with
    its own config, in its own folder and TensorBoard run.
    """
    keep_large_blocks_in_heap()
    ckpt_path = cfg.get("ckpt_path")
    if cfg.get("resume"):
        run_dir, ckpt_path = find_resume(str(cfg.resume), cfg.paths.log_dir)
        cfg = load_run_config(run_dir, cfg)
        log.info("resuming %s from %s", run_dir, ckpt_path)
    out_dir = Path(cfg.paths.output_dir)
    name = run_name(_run_overrides(out_dir))
    record = RunRecord(out_dir, name)  # first, so even a rejected sweep job leaves its result.json
    try:
        check_launch(cfg)
        if _is_multirun():  # single runs were checked before Hydra started (rnnlm.cli.prepare_argv)
            validate_overrides("train", CONF_DIR, list(HydraConfig.get().overrides.task))
        best_val_ppl = _fit_and_test(cfg, ckpt_path, name, record)
    except BaseException as err:
        status = "failed" if isinstance(err, Exception) else "interrupted"
        record.update(status=status, error=(user_message(err) or repr(err))[:500])
        raise
    finally:
        # The Trainer keeps its data loaders (views of memory-mapped token files) in reference cycles;
        # collect them now so a sweep of many jobs in one process does not pile up open files.
        gc.collect()
    return best_val_ppl


def _fit_and_test(cfg: DictConfig, ckpt_path: str | None, name: str, record: RunRecord) -> float:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    tokenizer = datamodule.load()
    datamodule.check_layout()

    config = OmegaConf.to_container(cfg, resolve=True)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    detect_nonfinite = bool(trainer_cfg.pop("detect_nonfinite", True))
    if cfg.data.get("variable_bptt"):
        trainer_cfg["reload_dataloaders_every_n_epochs"] = 1  # new window lengths each epoch
    module = LMModule(
        model=config["model"],
        optim=config["optim"],
        scheduler=config.get("scheduler") or None,
        vocab_size=tokenizer.vocab_size,
        tokenizer=tokenizer,
        config=config,
        detect_nonfinite=detect_nonfinite,
        compile=bool(cfg.get("compile", False)),
    )
    kind = cfg.model.get("cell") or str(cfg.model._target_).rsplit(".", 1)[-1]
    log.info("model: %s, %s parameters", kind, f"{module.num_parameters:,}")
    record.update(num_parameters=module.num_parameters)

    callbacks = _instantiate_group(cfg.get("callbacks"))
    loggers: list[Logger] = []
    for lg in (cfg.get("logger") or {}).values():
        if lg is None or "_target_" not in lg:
            continue
        extra = {"version": name} if "version" in lg and lg.version is None else {}
        loggers.append(instantiate(lg, **extra))
    trainer: L.Trainer = instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )

    if ckpt_path is None:  # a resumed run already has its hyperparameters in its TensorBoard run
        hparams = _flat_hparams(cfg)
        for lg in loggers:
            if isinstance(lg, TensorBoardLogger):  # HPARAMS needs a metric registered with them
                lg.log_hyperparams(hparams, metrics={"val/best_ppl": math.nan})
            else:
                lg.log_hyperparams(hparams)

    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    train_time = time.perf_counter() - t0

    # With trainer.strategy=ddp_spawn this process's module got only the weights back from the ranks;
    # what validation logged and the run's totals (module.on_train_end) come back with the trainer's
    # metrics. Read before testing, which starts the metrics afresh.
    logged = trainer.callback_metrics
    totals = {k: max(v, int(logged.get(f"run/{k}", 0))) for k, v in module.run_totals().items()}
    best_val_loss = module.best_val_loss
    if not math.isfinite(best_val_loss):
        best_val_loss = math.log(float(logged.get("val/best_ppl", math.inf)))
    # No validation ran (limit_val_batches=0, val_check_interval past the end): no figure, not exp(inf).
    best_val_ppl = perplexity(best_val_loss) if math.isfinite(best_val_loss) else math.nan
    test_ppl = math.nan
    finished = trainer.state.status.value == "finished" and not trainer.interrupted
    if cfg.get("test", True) and finished:
        ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt or None, verbose=False)
        if results:
            test_ppl = results[0].get("test/ppl", math.nan)
    record.update(
        status="finished" if finished else "interrupted",
        best_val_ppl=best_val_ppl,
        test_ppl=test_ppl,
        tokens_seen=totals["tokens_seen"],
        tokens_per_sec=totals["tokens_trained_here"] / train_time if train_time > 0 else math.nan,
        **_steady_throughput(trainer),
        epochs=totals["epochs"],
        steps=totals["steps"],
    )
    _print_summary(cfg, trainer, best_val_ppl, test_ppl)
    return best_val_ppl


def _steady_throughput(trainer: L.Trainer) -> dict[str, Any]:
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


def _print_summary(
    cfg: DictConfig, trainer: L.Trainer, best_val_ppl: float, test_ppl: float
) -> None:
    if trainer.global_rank != 0:
        return
    out = Path(cfg.paths.output_dir)
    lines = [
        f"output folder:      {out}",
        f"best val perplexity: {best_val_ppl:.3f}",
        f"test perplexity:     {test_ppl:.3f} (best checkpoint)",
    ]
    if cfg.data.tokenizer in CHAR_LEVEL and math.isfinite(best_val_ppl):
        lines.append(f"best val bpc:        {math.log2(best_val_ppl):.4f}")
    if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path:
        lines.append(f"best checkpoint:     {trainer.checkpoint_callback.best_model_path}")
    lines.append(
        f"look at the run:     tensorboard --logdir {out / 'tensorboard'} --host 127.0.0.1"
    )
    print("\n".join(lines), flush=True)
