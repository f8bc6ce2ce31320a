"""The range of every numeric or enumerated config key, in one table that the code and the config check share.

A model, data module or optimiser checks its arguments with `check("model", dropout=...)` and raises
ValueError("model.dropout=1.5 must be in [0, 1)"); the pre-start config check (rnnlm/config/check.py)
walks the same table over the composed config and refuses the same value in one line before anything
runs. Rules that depend on another list (the corpus names, the scan backends) or on several keys at
once (tied weights, a cell's options) live beside that list or those keys; the config check adds them.
Pure Python: importable from every layer, and the config check stays free of torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple


class Rule(NamedTuple):
    ok: Callable[[Any], bool]
    words: str  # what a valid value is, after "key=value ": "must be >= 1"

    def broken_by(self, value: Any) -> bool:
        return isinstance(value, float) and math.isnan(value) or not self.ok(value)


def is_number(v: Any) -> bool:
    """An int or float, not a bool (True is an int to Python, never a number here)."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def at_least(n: float, words: str | None = None) -> Rule:
    return Rule(lambda v: is_number(v) and v >= n, words or f"must be >= {n}")


def count(n: int = 1, words: str | None = None) -> Rule:
    return Rule(lambda v: is_number(v) and v >= n, words or f"must be an integer >= {n}")


def interval(low: float, high: float, closed_high: bool = False) -> Rule:
    if closed_high:
        return Rule(lambda v: is_number(v) and low <= v <= high, f"must be in [{low:g}, {high:g}]")
    return Rule(lambda v: is_number(v) and low <= v < high, f"must be in [{low:g}, {high:g})")


def one_of(values: tuple[Any, ...], words: str | None = None) -> Rule:
    shown = ", ".join(str(v) for v in values[:-1]) + f" or {values[-1]}"
    return Rule(lambda v: v in values, words or f"must be {shown}")


def optional(rule: Rule, words: str | None = None) -> Rule:
    return Rule(lambda v: v is None or rule.ok(v), words or f"{rule.words} or null")


POSITIVE = Rule(lambda v: is_number(v) and v > 0, "must be > 0")
NON_NEGATIVE = at_least(0)
FRACTION = interval(0, 1)  # dropout-like probabilities: 1 would drop everything
PROBABILITY = interval(0, 1, closed_high=True)


def _url(v: Any) -> bool:
    return isinstance(v, str) and "://" in v and v.split("://", 1)[0] in ("http", "https", "file")


def _sha256(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdefABCDEF" for c in v)


# rnnlm-export's formats (the command's first word; rnnlm.export.command builds each).
EXPORT_FORMATS = ("hub", "onnx")

# The tokenizers (rnnlm/data/tokenizers/__init__.py checks at import that it has exactly these).
TOKENIZER_KINDS = ("char", "word", "byte", "bpe")

KEYS: dict[str, Rule] = {
    # model: rnnlm.models.RNNLM, TransformerLM and the cells
    "model.vocab_size": count(),
    "model.embedding_dim": count(),
    "model.hidden_dim": count(),
    "model.num_layers": count(),
    "model.last_hidden_dim": optional(count()),
    "model.dropout": FRACTION,
    "model.dropout_input": optional(FRACTION),
    "model.dropout_hidden": optional(FRACTION),
    "model.dropout_embedding": FRACTION,
    "model.dropout_attention": FRACTION,
    "model.weight_drop": FRACTION,
    "model.ar_alpha": NON_NEGATIVE,
    "model.tar_beta": NON_NEGATIVE,
    "model.init_range": optional(POSITIVE),
    "model.forget_bias": optional(
        Rule(lambda v: is_number(v) and math.isfinite(v), "must be a finite number"),
    ),
    "model.adaptive_div_value": optional(POSITIVE),
    "model.conv_kernel": Rule(
        lambda v: _int(v) and (v == 0 or v >= 2), "must be 0 (no convolution) or an integer >= 2"
    ),
    "model.mlp_mult": at_least(0, "must be >= 0 (0: no MLP)"),
    "model.heads": count(),
    "model.chunk_size": count(),
    "model.window": one_of((1, 2)),
    "model.num_heads": count(),
    "model.attention": one_of(("bahdanau", "luong")),
    "model.max_len": count(),
    "model.memory": count(0),
    # optim, scheduler: rnnlm.training.optim, nt_asgd, schedules
    "optim.lr": POSITIVE,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.momentum": FRACTION,
    "optim.nonmono": optional(count()),
    "optim.average_after": optional(
        Rule(lambda v: is_number(v) and 0 < v <= 1, "must be a fraction of the run in (0, 1]")
    ),
    "scheduler.gamma": Rule(lambda v: is_number(v) and 0 < v <= 1, "must be in (0, 1]"),
    "scheduler.delay": count(0),
    # data: rnnlm.data.LMDataModule, the tokenizers, the layout
    "data.batch_size": count(),
    "data.bptt": count(),
    "data.eval_batch_size": optional(count()),
    "data.min_freq": count(),
    "data.max_vocab": optional(
        count(3), "must be null (no limit) or >= 3 (<unk>, <eos> and at least one word)"
    ),
    "data.tokenizer": one_of(TOKENIZER_KINDS),
    "data.encoding_errors": one_of(("strict", "replace", "ignore", "surrogateescape")),
    "data.vocab_size": optional(
        count(257), "must be null or >= 257 (byte-level BPE: the 256 bytes and at least one merge)"
    ),
    "data.carve_fraction": Rule(
        lambda v: is_number(v) and 0 < v < 0.5,
        "must be in (0, 0.5): the share of train rows carved",
    ),
    "data.url": optional(Rule(_url, "must be an http://, https:// or file:// URL")),
    "data.sha256": optional(Rule(_sha256, "must be 64 hexadecimal digits")),
    # trainer and the run
    "trainer.max_epochs": Rule(
        lambda v: is_number(v) and (v >= 1 or v == -1), "must be >= 1 (or -1 for no limit)"
    ),
    "trainer.gradient_clip_val": optional(NON_NEGATIVE),
    "model_budget": optional(count(1, "must be a number of parameters >= 1")),
    "optimized_metric": Rule(
        lambda v: v == "val/best_ppl",
        "must be val/best_ppl: train() returns the best validation perplexity, which sweeps minimise",
    ),
    "seed": optional(Rule(lambda v: _int(v) and v >= 0, "must be an integer >= 0")),
    # generate: rnnlm.inference.sampling
    "num_samples": count(1, "must be an integer >= 1 (how many texts generate.py prints)"),
    "max_new_tokens": count(),
    "temperature": at_least(0, "must be >= 0 (0 is greedy decoding)"),
    "top_k": optional(Rule(lambda v: _int(v) and v >= 1, "must be an integer >= 1")),
    "top_p": optional(
        Rule(lambda v: is_number(v) and 0 < v <= 1, "must be in (0, 1] (1 keeps every token)")
    ),
    # translation decoding (train/eval's `decode:` block, translate.py): rnnlm.inference.translator
    "decode.beam_size": count(1, "must be an integer >= 1 (1: greedy decoding, 5 a usual beam)"),
    "decode.val_beam_size": count(1, "must be an integer >= 1 (1: greedy decoding)"),
    "decode.length_penalty": at_least(0, "must be >= 0 (0: none; 0.6 is GNMT's)"),
    "decode.max_len": count(),
    "decode.batch_size": count(),
    "decode.val_sentences": optional(count()),
    "decode.samples": count(0),
    "beam_size": count(1, "must be an integer >= 1 (1: greedy decoding, 5 a usual beam)"),
    "length_penalty": at_least(0, "must be >= 0 (0: none; 0.6 is GNMT's)"),
    # export: rnnlm.export
    "format": one_of(
        EXPORT_FORMATS, "must be hub or onnx: rnnlm-export hub|onnx ckpt_path=... out=..."
    ),
    "opset": count(14, "must be an ONNX opset >= 14"),
    # search: rnnlm.applications.search
    "method": one_of(("embed", "bm25", "hybrid")),
    # serve: rnnlm.serve
    "port": Rule(lambda v: _int(v) and 0 <= v <= 65535, "must be a TCP port in [0, 65535]"),
    "max_new_tokens_cap": count(),
    "workers": count(),
    "queue_size": count(0),
    # eval: rnnlm.adaptation
    "cache.window": count(0, "must be an integer >= 0 (positions remembered; 0: off)"),
    "cache.theta": NON_NEGATIVE,
    "cache.weight": PROBABILITY,
    "dynamic.lr": NON_NEGATIVE,
    "dynamic.decay": PROBABILITY,
}


# Arguments the code passes itself when it builds a node from its `_target_`: a user may not set them.
INJECTED: dict[str, set[str]] = {
    "model": {"vocab_size"},  # the tokenizer's vocabulary (training/module.py)
    "optim": {"params"},  # the parameter groups (training/optim.py)
    "scheduler": {"optimizer"},  # training/optim.py
    "trainer": {"callbacks", "logger", "plugins"},  # training/run.py
    "data": {"tokenizer_state"},  # a checkpoint's tokenizer (evaluate.py)
}


def check(node: str, **values: Any) -> None:
    """ValueError for the first of `values` (arguments of the config node `node`) outside its range."""
    for name, value in values.items():
        key = f"{node}.{name}" if node else name
        rule = KEYS[key]
        if rule.broken_by(value):
            raise ValueError(f"{key}={value} {rule.words}")


__all__ = ["INJECTED", "KEYS", "TOKENIZER_KINDS", "Rule", "check"]
