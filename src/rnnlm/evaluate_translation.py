"""Scoring a translation checkpoint (`src/eval.py` on a checkpoint of a translation run): per split, the
cross-entropy and perplexity of the references, and BLEU and chrF of the model's translations against
every reference of each source sentence."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rnnlm.data.pair_datamodule import PairDataModule
from rnnlm.errors import UserError
from rnnlm.inference.bleu import corpus_scores
from rnnlm.inference.checkpoint import build_from_checkpoint
from rnnlm.inference.device import resolve_device
from rnnlm.inference.translator import Translator, translate_ids

DATA_CLASSES: dict[str, type] = {
    "rnnlm.data.PairDataModule": PairDataModule,
    "rnnlm.data.pair_datamodule.PairDataModule": PairDataModule,
}
SPLITS = ("valid", "test")  # what is scored: a translation run's held-out splits


def evaluate_translation(cfg: DictConfig) -> dict[str, Any]:
    """Loss, perplexity, BLEU and chrF of each split; written to <run>/eval.json and printed."""
    splits = tuple(cfg.eval.splits)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise UserError(
            f"eval.splits={list(splits)}: {unknown[0] if unknown else 'no split'} is not a split of "
            f"the pairs; choose among {', '.join(SPLITS)} (e.g. eval.splits=[valid,test])"
        )
    d = cfg.decode  # checked with the config (schema's decode.*), and again by translate_ids
    translator = Translator.load(cfg.ckpt_path, device=resolve_device(cfg.device))
    data_cfg = dict(translator.config.get("data") or {})
    if not data_cfg:
        raise UserError(
            f"{cfg.ckpt_path} holds no data settings: it was not written by src/train.py"
        )
    if cfg.data.path:
        data_cfg.update(path=str(cfg.data.path), dataset=None)
    data_cfg["cache_dir"] = cfg.paths.data_dir
    datamodule = build_from_checkpoint(
        data_cfg,
        DATA_CLASSES,
        cfg.ckpt_path,
        "data",
        tokenizer_state=translator.tokenizer.to_dict(),
    )
    datamodule.load()
    results: dict[str, Any] = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "pairs": data_cfg.get("path") or data_cfg.get("dataset"),
        "direction": data_cfg.get("direction"),
        "decoding": {k: d[k] for k in ("beam_size", "length_penalty", "max_len")},
        "splits": {},
    }
    model = translator.model
    for split in splits:
        loader = datamodule.val_dataloader() if split == "valid" else datamodule.test_dataloader()
        loss, tokens = _cross_entropy(model, loader, translator.device)
        refs = datamodule.references(split)
        t0 = time.perf_counter()
        ids = translate_ids(
            model,
            datamodule.encode_source([s for s, _ in refs]),
            d.beam_size,
            d.length_penalty,
            d.max_len,
            d.batch_size,
        )
        seconds = time.perf_counter() - t0
        hyps = [translator.tokenizer.target.decode(h) for h in ids]
        scores = corpus_scores(hyps, [targets for _, targets in refs])
        results["splits"][split] = {
            "loss": loss,
            "ppl": math.exp(loss),
            "tokens": tokens,
            "sentences": len(refs),
            **scores,
            "sentences_per_sec": len(refs) / seconds if seconds > 0 else math.nan,
        }
    out = Path(cfg.paths.output_dir) / "eval.json"
    out.write_text(json.dumps(results, indent=1))
    print(format_results(results) + f"\nwritten to {out}", flush=True)
    return results


@torch.no_grad()
def _cross_entropy(model: torch.nn.Module, loader: Any, device: torch.device) -> tuple[float, int]:
    """Mean cross-entropy per target token (nats) of a split's references, and their count."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        src, src_len, tgt = (batch[k].to(device) for k in ("src", "src_len", "tgt"))
        total += float(model.nll(src, src_len, tgt, "sum"))
        count += int(tgt.ne(0).sum())
    return total / max(count, 1), count


def format_results(results: dict[str, Any]) -> str:
    d = results["decoding"]
    lines = [
        f"checkpoint: {results['ckpt_path']}",
        f"pairs: {results['pairs']} ({results['direction']}); beam {d['beam_size']}, "
        f"length penalty {d['length_penalty']}",
        "| split | sentences | target tokens | loss (nats) | perplexity | BLEU | chrF | sentences/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split, r in results["splits"].items():
        lines.append(
            f"| {split} | {r['sentences']} | {r['tokens']} | {r['loss']:.4f} | {r['ppl']:.3f} | "
            f"{r['bleu']:.2f} | {r['chrf']:.2f} | {r['sentences_per_sec']:.1f} |"
        )
    return "\n".join(lines)
