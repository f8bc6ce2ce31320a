"""Plain PyTorch language models: no Lightning, no Hydra, reusable on their own."""

from rnnlm.models.rnn_lm import CELLS, RNNLM, Hidden, detach_hidden, num_parameters
from rnnlm.models.transformer import TransformerLM

__all__ = ["CELLS", "RNNLM", "Hidden", "TransformerLM", "detach_hidden", "num_parameters"]
