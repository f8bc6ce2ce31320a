"""rnnlm: recurrent language models (RNN, LSTM, GRU) on PyTorch Lightning and Hydra."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from rnnlm.inference.lm import LanguageModel
    from rnnlm.inference.translator import Translator


def __getattr__(name: str):  # lazy, so `import rnnlm.models` does not pull in Hydra or Lightning
    if name == "LanguageModel":
        from rnnlm.inference.lm import LanguageModel

        return LanguageModel
    if name == "Translator":
        from rnnlm.inference.translator import Translator

        return Translator
    raise AttributeError(f"module 'rnnlm' has no attribute {name!r}")


__all__ = ["LanguageModel", "Translator", "__version__"]
