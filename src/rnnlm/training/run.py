"""`train(cfg)`: compose data, model, trainer, callbacks and loggers from a Hydra config and fit."""

from __future__ import annotations

import gc
import logging
import math
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from rnnlm.config import CONF_DIR, in_multirun
from rnnlm.config.check import validate_overrides
from rnnlm.errors import (
    EXIT_FAILED,
    EXIT_FINISHED,
    RunInterrupted,
    UserError,
    exit_code,
    exit_interrupted,
    user_message,
)
from rnnlm.inference.checkpoint import check_fits
from rnnlm.training import run_folder, trackers
from rnnlm.training.budget import fit_budget
from rnnlm.training.callbacks import steady_throughput
from rnnlm.training.checkpoint_io import AtomicCheckpointIO
from rnnlm.training.console import (
    print_interrupted,
    print_resuming,
    print_summary,
    quiet_lightning,
)
from rnnlm.training.interrupts import StopAtStepBoundary, StopSignals
from rnnlm.training.launch import (
    check_launch,
    flat_hparams,
    instantiate_group,
    keep_large_blocks_in_heap,
    run_name,
    run_overrides,
    task_overrides,
)
from rnnlm.training.metrics import perplexity
from rnnlm.training.module import LMModule
from rnnlm.training.precision import choose_precision
from rnnlm.training.record import RunRecord
from rnnlm.training.resume import find_resume, load_run_config, save_resume_changes
from rnnlm.training.run_folder import command_line, launch_rank

log = logging.getLogger(__name__)

# Lightning gives its loggers a plain console handler of their own only if it is imported before any
# logging is set up; it is now imported after Hydra's (so that a refused command never loads it).
# Keep its messages as they were: plain lines on the console, once, not in Hydra's format.
for _name in ("lightning.pytorch", "lightning.fabric"):
    _logger = logging.getLogger(_name)
    if _logger.propagate:
        _logger.propagate = False
        _logger.addHandler(logging.StreamHandler())


def train(cfg: DictConfig) -> float:
    """Fit, test the best checkpoint, print a summary; return the best validation perplexity.

    With `resume=<run folder | checkpoint | latest>` the run continues from its last checkpoint with
    its own config, in its own folder and TensorBoard run. The folder is locked for this process
    (rnnlm.training.run_folder); its result.json keeps every attempt (rnnlm.training.record).
    """
    keep_large_blocks_in_heap()
    # Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates, once per run; nothing to act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # Mixed precision keeps the weights in float32, which is what the model summary then counts.
    warnings.filterwarnings(
        "ignore", message=r"Precision .*-mixed is not supported by the model summary"
    )
    quiet_lightning()
    ckpt_path = cfg.get("ckpt_path")
    resumed = bool(cfg.get("resume"))
    changes: dict[str, Any] = {}
    if resumed:
        run_dir, ckpt_path = find_resume(str(cfg.resume), cfg.paths.log_dir)
        cfg, changes = load_run_config(run_dir, cfg, task_overrides())
    out_dir = Path(cfg.paths.output_dir)
    owner = launch_rank() == 0
    if owner:
        run_folder.lock(out_dir)
        if not resumed:
            run_folder.refuse_if_taken(out_dir)
    name = run_name(run_overrides(out_dir))
    record = RunRecord(out_dir, name, resumed_from=ckpt_path if resumed else None)
    if resumed:  # the attempt begins when training does: a resume refused before leaves no trace
        record.on_begin = lambda: save_resume_changes(out_dir, changes)
    else:
        record.begin()  # first, so even a rejected sweep job leaves its result.json
    try:
        with StopSignals() as signals:
            try:
                check_launch(cfg)
                if in_multirun():  # a single run was checked before Hydra started
                    validate_overrides("train", CONF_DIR, task_overrides())
                return _fit_and_test(cfg, ckpt_path, name, record, signals, resumed)
            except BaseException as err:
                _record_failure(cfg, record, err, signals)
                raise
    finally:
        if owner:
            run_folder.unlock(out_dir)
        # The Trainer keeps its data loaders (views of memory-mapped token files) in reference cycles;
        # collect them now so a sweep of many jobs in one process does not pile up open files.
        gc.collect()


def _record_failure(
    cfg: DictConfig, record: RunRecord, err: BaseException, signals: StopSignals
) -> None:
    """How the attempt ended, in result.json; an interrupted run becomes `SystemExit(130 | 143)` with the
    command that resumes it (Lightning turns Ctrl-C into exit 1 and SIGTERM into exit 0)."""
    known = isinstance(err, Exception) and user_message(err) is not None  # e.g. a full disk
    signum = getattr(err, "signum", None) or signals.signum
    if isinstance(err, KeyboardInterrupt):
        signum = signum or signal.SIGINT
    elif isinstance(err, SIGTERMException):
        signum = signal.SIGTERM
    elif known:
        signum = None
    # Otherwise an error after a signal is the signal's doing (a DDP peer that stopped first).
    if signum is not None:
        code = exit_interrupted(signum)
        reason = f"interrupted by {signal.Signals(signum).name}"
        if record.began is not None:
            record.end("interrupted", code, reason)
        print_interrupted(cfg, reason)
        raise SystemExit(code) from None
    if isinstance(err, Exception):
        record.end("failed", exit_code(err), (user_message(err) or repr(err))[:500])
    elif isinstance(err, SystemExit):
        record.end("failed", err.code if isinstance(err.code, int) else EXIT_FAILED, repr(err))


def _fit_and_test(
    cfg: DictConfig,
    ckpt_path: str | None,
    name: str,
    record: RunRecord,
    signals: StopSignals,
    resumed: bool,
) -> float:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    tokenizer = datamodule.load()
    datamodule.check_layout()

    config = OmegaConf.to_container(cfg, resolve=True)
    translation = getattr(datamodule, "task", "lm") == "translation"
    if cfg.get("model_budget") and translation:
        raise UserError(
            "model_budget sizes language models; for a translation model set its widths "
            "(e.g. model.hidden_dim=512) and leave model_budget=null"
        )
    if cfg.get("model_budget"):  # the width that gives the model about this many parameters
        config["model"], count = fit_budget(config["model"], tokenizer.vocab_size, cfg.model_budget)
        with open_dict(cfg):
            cfg.model = config["model"]  # what TensorBoard's HPARAMS shows
        log.info("model_budget=%s: %s parameters", f"{cfg.model_budget:,}", f"{count:,}")
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    detect_nonfinite = bool(trainer_cfg.pop("detect_nonfinite", True))
    trainer_cfg.update(getattr(datamodule, "trainer_settings", {}))  # e.g. variable-length BPTT's
    precision = choose_precision(
        trainer_cfg.get("precision", "auto"), trainer_cfg.get("accelerator")
    )
    trainer_cfg["precision"] = precision.value
    module = _build_module(cfg, config, datamodule, tokenizer, detect_nonfinite)
    module.corpus_fingerprint = datamodule.corpus_fingerprint
    module.command = command_line()
    kind = _model_kind(cfg, module)
    log.info("model: %s, %s parameters", kind, f"{module.num_parameters:,}")
    log.info("precision: %s (%s)", precision.value, precision.reason)
    if launch_rank() == 0:  # printed: a sweep's runs compare by it
        print(
            f"model:              {kind}, {module.num_parameters:,} parameters\n"
            f"precision:          {precision.value} ({precision.reason})",
            flush=True,
        )
    checkpoint_io = AtomicCheckpointIO()
    if resumed:  # check the checkpoint against this model and corpus before the run's files change
        ckpt = checkpoint_io.preload(ckpt_path)
        check_fits(
            ckpt, module.state_dict(), tokenizer.to_dict(), datamodule.corpus_fingerprint, ckpt_path
        )
        _check_epochs(ckpt, trainer_cfg.get("max_epochs"), Path(cfg.paths.output_dir))
        print_resuming(cfg, record, ckpt, ckpt_path)
        # Lightning warns that a mid-epoch resume is unreliable: rnnlm resumes the stream itself,
        # at the exact window (LMModule.on_load_checkpoint, LMDataModule.resume_train_at).
        warnings.filterwarnings("ignore", message=r".*resuming from a checkpoint that ended before")
    record.update(num_parameters=module.num_parameters, precision=precision.value)

    callbacks = [*instantiate_group(cfg.get("callbacks")), StopAtStepBoundary(signals)]
    if resumed:
        callbacks.append(_BeginAttempt(record))
    callbacks.append(trackers.ValidationHistory(cfg.paths.output_dir))
    loggers = trackers.build_loggers(cfg.get("logger"), name)
    trainer: L.Trainer = instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers or False, plugins=[checkpoint_io]
    )

    if ckpt_path is None:  # a resumed run already has its hyperparameters in its TensorBoard run
        trackers.log_hparams(loggers, flat_hparams(cfg))
    try:
        return _fit_then_test(cfg, trainer, module, datamodule, ckpt_path, record, signals, loggers)
    finally:
        trackers.close(loggers, finished=record.data.get("status") == "finished")


def _fit_then_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: LMModule,
    datamodule: Any,
    ckpt_path: str | None,
    record: RunRecord,
    signals: StopSignals,
    loggers: list,
) -> float:
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    train_time = time.perf_counter() - t0
    if signals.signum is not None:  # asked to stop during the last validation: the test is not run
        raise RunInterrupted(signals.signum)

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
    translation = _translation_scores(module, logged)
    finished = trainer.state.status.value == "finished" and not trainer.interrupted
    if cfg.get("test", True) and finished:
        ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt or None, verbose=False)
        if results:
            test_ppl = results[0].get("test/ppl", math.nan)
            if translation:
                translation.update(
                    {f"test_{k}": results[0].get(f"test/{k}", math.nan) for k in ("bleu", "chrf")}
                )
    # An attempt that trained nothing (a finished run resumed as it was) keeps the speed figures.
    speed = {}
    if totals["tokens_trained_here"] > 0 and train_time > 0:
        speed = {"tokens_per_sec": totals["tokens_trained_here"] / train_time}
        speed.update(steady_throughput(trainer))
    record.begin()  # (a resume whose fit had nothing left to train never started its training)
    record.end(
        "finished" if finished else "interrupted",
        EXIT_FINISHED if finished else EXIT_FAILED,
        None if finished else "the fit stopped before its end",
        best_val_ppl=best_val_ppl,
        test_ppl=test_ppl,
        tokens_seen=totals["tokens_seen"],
        **speed,
        epochs=totals["epochs"],
        steps=totals["steps"],
        **translation,
    )
    final = {"val/best_ppl": best_val_ppl, "test/ppl": test_ppl}
    final.update(
        {k.replace("_", "/", 1): v for k, v in translation.items() if k.startswith("test_")}
    )
    trackers.log_final(loggers, final, trainer.global_step)
    print_summary(cfg, trainer, best_val_ppl, test_ppl, translation)
    return best_val_ppl


def _translation_scores(module: LMModule, logged: dict) -> dict[str, float]:
    """A translation run's BLEU/chrF for result.json (empty for a language model): the best validation
    BLEU, and the last validation's BLEU and chrF."""
    if module.task != "translation":
        return {}
    best = getattr(module, "best_val_bleu", -math.inf)
    if not math.isfinite(best):
        best = float(logged.get("val/best_bleu", math.nan))
    return {
        "best_val_bleu": best,
        "val_bleu": float(logged.get("val/bleu", math.nan)),
        "val_chrf": float(logged.get("val/chrf", math.nan)),
    }


def _build_module(
    cfg: DictConfig, config: dict, datamodule: Any, tokenizer: Any, detect_nonfinite: bool
) -> LMModule:
    """A language model's module, or for pairs data (data=tatoeba_eng_fra, data=pairs) a translation
    module around an encoder-decoder or, for a language model config, a conditional LM."""
    common = {
        "model": config["model"],
        "optim": config["optim"],
        "scheduler": config.get("scheduler") or None,
        "tokenizer": tokenizer,
        "config": config,
        "detect_nonfinite": detect_nonfinite,
        "compile": bool(cfg.get("compile", False)),
    }
    if getattr(datamodule, "task", "lm") != "translation":
        return LMModule(vocab_size=tokenizer.vocab_size, **common)
    from rnnlm.training.translation import TranslationModule

    return TranslationModule(
        src_vocab=tokenizer.source.vocab_size,
        tgt_vocab=tokenizer.target.vocab_size,
        shared=tokenizer.shared,
        decode=config.get("decode"),
        **common,
    )


def _model_kind(cfg: DictConfig, module: LMModule) -> str:
    """What the start-up line calls the model: its cell (gru), class, and for translation its form."""
    target = str(cfg.model._target_).rsplit(".", 1)[-1]
    cell = cfg.model.get("cell")
    if module.task != "translation":
        return cell or target
    if target in ("RNNLM", "TransformerLM"):
        return f"conditional LM ({cell or target})"
    return f"{target} ({cell})" if cell else target


class _BeginAttempt(L.Callback):
    """A resumed run's attempt begins (in result.json) when its training starts: after Lightning has
    read and restored the checkpoint, so a resume that fails before that leaves the record as it was."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record.begin()


def _check_epochs(ckpt: dict, max_epochs: Any, run: Path) -> None:
    """Lightning refuses, with a traceback, a checkpoint that has trained more epochs than max_epochs."""
    done = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    done = done.get("current", {}).get("completed", ckpt.get("epoch", 0))
    if max_epochs not in (None, -1) and done > max_epochs:
        raise UserError(
            f"resume: run {run} has trained {done} epochs, more than trainer.max_epochs={max_epochs}: "
            f"pass resume={run} trainer.max_epochs=<more than {done}> to train it further"
        )
