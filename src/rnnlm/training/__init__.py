"""Where model meets data: the LightningModule, callbacks, metrics and the training pipeline.

`LMModule` is imported on first use, so the light parts (resume, run folders, the record) can run
before torch and Lightning are loaded: a refused command answers at once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LMModule"]


def __getattr__(name: str) -> Any:
    if name == "LMModule":
        from rnnlm.training.module import LMModule

        return LMModule
    raise AttributeError(f"module 'rnnlm.training' has no attribute {name!r}")
