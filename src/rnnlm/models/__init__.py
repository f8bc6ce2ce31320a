"""Plain PyTorch language models: no Lightning, no Hydra, reusable on their own."""

from rnnlm.models.rnn_lm import CELLS, RNNLM, Hidden, detach_hidden, num_parameters

__all__ = ["CELLS", "RNNLM", "Hidden", "detach_hidden", "num_parameters"]
