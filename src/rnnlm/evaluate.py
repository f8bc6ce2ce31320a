"""Scoring a checkpoint on its own corpus or another one (`src/eval.py`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rnnlm.adaptation.cache import ContinuousCache
from rnnlm.adaptation.dynamic import check_settings
from rnnlm.adaptation.tuning import (
    evaluate_stream_cached,
    evaluate_stream_dynamic,
    tune_cache,
    tune_dynamic,
)
from rnnlm.data.datamodule import LMDataModule
from rnnlm.data.layout import check_fits
from rnnlm.data.sources import SPLITS
from rnnlm.data.tokenizers import CHAR_LEVEL
from rnnlm.errors import UserError
from rnnlm.inference.checkpoint import build_from_checkpoint
from rnnlm.inference.device import resolve_device
from rnnlm.inference.lm import LanguageModel
from rnnlm.training.metrics import LN2, perplexity

# The data module a checkpoint's data config may ask for (nothing else is built from one).
DATA_CLASSES: dict[str, type] = {
    "rnnlm.data.LMDataModule": LMDataModule,
    "rnnlm.data.datamodule.LMDataModule": LMDataModule,
}

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Loss, perplexity and bits per character of each split; written to <run>/eval.json and printed."""
    splits = tuple(cfg.eval.splits)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise UserError(
            f"eval.splits={list(splits)}: {unknown[0] if unknown else 'no split'} is not a split of "
            f"the corpus; choose among {', '.join(SPLITS)} (e.g. eval.splits=[valid,test])"
        )
    lm = LanguageModel.load(cfg.ckpt_path, device=resolve_device(cfg.device))
    data_cfg = dict(lm.config.get("data") or {})
    if not data_cfg:
        raise UserError(
            f"{cfg.ckpt_path} holds no data settings: it was not written by src/train.py"
        )
    bptt = int(data_cfg["bptt"])
    batch_size = int(
        cfg.eval.batch_size or data_cfg.get("eval_batch_size") or data_cfg["batch_size"]
    )
    if cfg.data.path:
        data_cfg["path"] = str(cfg.data.path)
    data_cfg.update(batch_size=batch_size, eval_batch_size=batch_size, cache_dir=cfg.paths.data_dir)
    datamodule = build_from_checkpoint(
        data_cfg, DATA_CLASSES, cfg.ckpt_path, "data", tokenizer_state=lm.tokenizer.to_dict()
    )
    datamodule.load()
    datamodule.check_layout(splits)
    char_level = lm.tokenizer.kind in CHAR_LEVEL
    results: dict[str, Any] = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "corpus": data_cfg.get("path") or "bundled shakespeare",
        "tokenizer": lm.tokenizer.kind,
        "batch_size": batch_size,
        "bptt": bptt,
        "splits": {},
    }
    score, results["adaptation"] = scorer(cfg, lm, datamodule, batch_size, bptt)
    for split in splits:
        ids = torch.from_numpy(datamodule.ids[split].astype("int64"))
        nll, nll_static, count = score(ids)
        loss = nll / count
        row: dict[str, Any] = {
            "loss": loss,
            "ppl": perplexity(loss),
            "tokens": count,
            "unknown_tokens": int(datamodule.unknown_counts.get(split, 0)),
        }
        if char_level:
            row["bpc"] = loss / LN2
        if results["adaptation"]:
            row["ppl_static"] = perplexity(nll_static / count)
        results["splits"][split] = row
    out = Path(cfg.paths.output_dir) / "eval.json"
    out.write_text(json.dumps(results, indent=1))
    print(format_results(results) + f"\nwritten to {out}", flush=True)
    return results


Scorer = Callable[[torch.Tensor], tuple[float, float, int]]


def scorer(
    cfg: DictConfig, lm: LanguageModel, datamodule: Any, batch_size: int, bptt: int
) -> tuple[Scorer, dict[str, Any] | None]:
    """How each split is scored: (ids -> (summed loss, summed loss of the model alone, tokens)) and the
    test-time adaptation in use (None: the model alone), its settings chosen on `tune_on` if named."""
    # any non-zero value turns a method on; a negative one is then refused below, not ignored
    use_cache, use_dynamic = int(cfg.cache.window or 0) != 0, float(cfg.dynamic.lr or 0) != 0
    if use_cache and use_dynamic:
        raise UserError(
            "cache.window and dynamic.lr are both set: score with one of them at a time"
        )
    try:  # bad settings fail before any scoring, in one line
        if use_cache:
            ContinuousCache(int(cfg.cache.window), float(cfg.cache.theta), float(cfg.cache.weight))
        if use_dynamic:
            check_settings(float(cfg.dynamic.lr), float(cfg.dynamic.decay))
    except ValueError as err:
        raise UserError(str(err)) from None
    section = "cache" if use_cache else "dynamic"
    if (use_cache or use_dynamic) and cfg[section].tune_on in cfg.eval.splits:
        log.warning(
            "%s.tune_on=%s is also a reported split: its figure is optimistic (tuned on itself)",
            section,
            cfg[section].tune_on,
        )

    def tuning_ids() -> torch.Tensor | None:  # the `tune_on` text of the method in use
        split = cfg[section].tune_on
        if split is None:
            return None
        if split not in datamodule.ids:
            raise UserError(
                f"{section}.tune_on={split!r} is not a split of this corpus: use one of "
                f"{sorted(datamodule.ids)}"
            )
        ids = datamodule.ids[split]
        n = cfg[section].tune_tokens
        if n is not None:  # the last n tokens (e.g. held-out text of the training split)
            if int(n) < 1:
                raise UserError(
                    f"{section}.tune_tokens={n} must be >= 1 (or null: the whole split)"
                )
            ids = ids[-int(n) :]
        ids = torch.from_numpy(ids.astype("int64"))
        check_fits(ids.numel(), batch_size, bptt, f"{section}.tune_on={split}")
        return ids

    if use_cache:
        c, window = cfg.cache, int(cfg.cache.window)
        theta, lam, ids = float(c.theta), float(c.weight), tuning_ids()
        if ids is not None:
            theta, lam, losses = tune_cache(
                lm, ids, batch_size, bptt, window, list(c.thetas), list(c.weights)
            )
            _log_tuning("cache", c.tune_on, {"theta": theta, "weight": lam}, losses)
        cache = ContinuousCache(window, theta, lam)
        settings = {"method": "cache", "window": window, "theta": theta, "weight": lam}

        def score(ids: torch.Tensor) -> tuple[float, float, int]:
            return evaluate_stream_cached(lm, ids, batch_size, bptt, cache)

    elif use_dynamic:
        d = cfg.dynamic
        lr, decay, ids = float(d.lr), float(d.decay), tuning_ids()
        if ids is not None:
            lr, decay, losses = tune_dynamic(lm, ids, batch_size, bptt, list(d.lrs), list(d.decays))
            _log_tuning("dynamic", d.tune_on, {"lr": lr, "decay": decay}, losses)
        settings = {"method": "dynamic", "lr": lr, "decay": decay}

        def score(ids: torch.Tensor) -> tuple[float, float, int]:
            nll, count = evaluate_stream_dynamic(lm, ids, batch_size, bptt, lr, decay)
            return nll, lm.evaluate_stream(ids, batch_size, bptt)[0], count

    else:

        def score(ids: torch.Tensor) -> tuple[float, float, int]:
            nll, count = lm.evaluate_stream(ids, batch_size, bptt)
            return nll, nll, count

        return score, None
    settings["tuned_on"] = cfg[section].tune_on
    if cfg[section].tune_on is not None and cfg[section].tune_tokens is not None:
        settings["tuned_on"] += f" (last {int(cfg[section].tune_tokens)} tokens)"
    return score, settings


def _log_tuning(section: str, split: str, best: dict, losses: dict) -> None:
    chosen = ", ".join(f"{k} {v:g}" for k, v in best.items())
    loss = losses[tuple(best.values())]
    log.info(
        "%s tuned on %s: %s (ppl %.3f; %d pairs tried)",
        section,
        split,
        chosen,
        perplexity(loss),
        len(losses),
    )


def format_results(results: dict[str, Any]) -> str:
    char_level = results["tokenizer"] in CHAR_LEVEL
    head = "| split | tokens | unknown | loss (nats) | perplexity |" + (
        " bpc |" if char_level else ""
    )
    rule = "|---|---:|---:|---:|---:|" + ("---:|" if char_level else "")
    adaptation = results.get("adaptation")
    if adaptation:
        head += " perplexity of the model alone |"
        rule += "---:|"
    lines = [f"checkpoint: {results['ckpt_path']}", f"corpus: {results['corpus']}"]
    if adaptation:
        settings = ", ".join(
            f"{k} {v:g}" for k, v in adaptation.items() if k not in ("method", "tuned_on")
        )
        name = {"cache": "continuous cache", "dynamic": "dynamic evaluation"}[adaptation["method"]]
        tuned = f" (tuned on {adaptation['tuned_on']})" if adaptation["tuned_on"] else ""
        lines.append(f"{name}: {settings}{tuned}")
    lines += [head, rule]
    for split, r in results["splits"].items():
        line = f"| {split} | {r['tokens']} | {r['unknown_tokens']} | {r['loss']:.4f} | {r['ppl']:.3f} |"
        line += f" {r['bpc']:.4f} |" if char_level else ""
        line += f" {r['ppl_static']:.3f} |" if adaptation else ""
        lines.append(line)
    return "\n".join(lines)
