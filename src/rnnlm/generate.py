"""Sampling text from a checkpoint (`src/generate.py`), streamed to the terminal as it is produced."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from rnnlm.inference.device import resolve_device
from rnnlm.inference.lm import LanguageModel


def generate(cfg: DictConfig) -> list[str]:
    lm = LanguageModel.load(cfg.ckpt_path, device=resolve_device(cfg.device))
    _, unknown = lm.tokenizer.encode_with_unknowns(cfg.prompt)
    if unknown:
        print(
            f"note: {unknown} prompt token(s) are not in the vocabulary and are read as <unk>",
            file=sys.stderr,
        )
    samples = []
    for i in range(cfg.num_samples):
        if cfg.num_samples > 1:
            print(f"--- sample {i + 1} ---", flush=True)
        print(cfg.prompt, end="", flush=True)
        text = lm.generate(
            cfg.prompt,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            top_p=cfg.top_p,
            seed=None if cfg.seed is None else cfg.seed + i,
            on_text=lambda piece: print(piece, end="", flush=True),
        )
        print(flush=True)
        samples.append(text)
    return samples
