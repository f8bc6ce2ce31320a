"""Using a trained model without a Trainer: load a checkpoint safely, generate, score.

- `lm`: `LanguageModel` (load, generate, score, evaluate a token stream) and `Score`.
- `checkpoint`: opening a checkpoint with `weights_only=True` and building its model from plain hparams.
- `sampling`: temperature, top-k and top-p on one step's logits.
- `device`: the `device=` key (auto, cpu, cuda[:N]) checked against the machine.
"""

from rnnlm.inference.lm import LanguageModel, Score

__all__ = ["LanguageModel", "Score"]
