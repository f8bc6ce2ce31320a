"""Plain PyTorch language models: no Lightning, no Hydra, reusable on their own."""

from rnnlm.models.loss import linear_cross_entropy
from rnnlm.models.rnn_lm import CELLS, RNNLM, SOFTMAXES, Hidden, detach_hidden, num_parameters
from rnnlm.models.transformer import TransformerLM

__all__ = [
    "CELLS",
    "RNNLM",
    "SOFTMAXES",
    "Hidden",
    "TransformerLM",
    "detach_hidden",
    "linear_cross_entropy",
    "num_parameters",
]
