"""Where model meets data: the LightningModule, callbacks, metrics and the training pipeline."""

from rnnlm.training.module import LMModule

__all__ = ["LMModule"]
