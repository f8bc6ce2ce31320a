"""Plain PyTorch language models: no Lightning, no Hydra, reusable on their own.

Names are imported on first use, so a light part (the cells' key table that the config check reads)
can be imported without torch.
"""

from __future__ import annotations

from rnnlm.lazy import lazy_getattr

_WHERE = {
    "CELLS": "rnnlm.models.classic",
    "RNNLM": "rnnlm.models.rnn_lm",
    "SOFTMAXES": "rnnlm.models.rules",
    "Hidden": "rnnlm.models.classic",
    "detach_hidden": "rnnlm.models.rnn_lm",
    "num_parameters": "rnnlm.models.rnn_lm",
    "TransformerLM": "rnnlm.models.transformer",
    "linear_cross_entropy": "rnnlm.models.loss",
    "linear_scan": "rnnlm.models.scan",
    "Seq2SeqAttention": "rnnlm.models.seq2seq",
    "Seq2SeqTransformer": "rnnlm.models.seq2seq_transformer",
    "ConditionalLM": "rnnlm.models.conditional",
    "TranslationModel": "rnnlm.models.seq2seq_base",
    "greedy": "rnnlm.models.beam",
    "beam_search": "rnnlm.models.beam",
}


__getattr__ = lazy_getattr(__name__, _WHERE)


__all__ = sorted(_WHERE)
