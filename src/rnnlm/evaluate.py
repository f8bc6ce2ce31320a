"""Scoring a checkpoint on its own corpus or another one (`src/eval.py`)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from rnnlm.data.tokenizers import CHAR_LEVEL
from rnnlm.errors import UserError
from rnnlm.lm import LanguageModel
from rnnlm.training.metrics import LN2

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} but no CUDA GPU is available: use device=cpu")
    return torch.device(name)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Loss, perplexity and bits per character of each split; written to <run>/eval.json and printed."""
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
    datamodule = instantiate(data_cfg, tokenizer_state=lm.tokenizer.to_dict())
    datamodule.load()
    splits = tuple(cfg.eval.splits)
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
    for split in splits:
        ids = torch.from_numpy(datamodule.ids[split].astype("int64"))
        nll, count = lm.evaluate_stream(ids, batch_size, bptt)
        loss = nll / count
        row = {
            "loss": loss,
            "ppl": math.exp(min(loss, 700.0)),
            "tokens": count,
            "unknown_tokens": int(datamodule.unknown_counts.get(split, 0)),
        }
        if char_level:
            row["bpc"] = loss / LN2
        results["splits"][split] = row
    out = Path(cfg.paths.output_dir) / "eval.json"
    out.write_text(json.dumps(results, indent=1))
    print(format_results(results) + f"\nwritten to {out}", flush=True)
    return results


def format_results(results: dict[str, Any]) -> str:
    char_level = results["tokenizer"] in CHAR_LEVEL
    head = "| split | tokens | unknown | loss (nats) | perplexity |" + (
        " bpc |" if char_level else ""
    )
    rule = "|---|---:|---:|---:|---:|" + ("---:|" if char_level else "")
    lines = [f"checkpoint: {results['ckpt_path']}", f"corpus: {results['corpus']}", head, rule]
    for split, r in results["splits"].items():
        line = f"| {split} | {r['tokens']} | {r['unknown_tokens']} | {r['loss']:.4f} | {r['ppl']:.3f} |"
        lines.append(line + (f" {r['bpc']:.4f} |" if char_level else ""))
    return "\n".join(lines)
