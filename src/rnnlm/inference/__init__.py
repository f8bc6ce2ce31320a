"""Using a trained model without a Trainer: load a checkpoint safely, generate, score.

- `lm`: `LanguageModel` (load, generate, score, evaluate a token stream) and `Score`.
- `checkpoint`: opening a checkpoint with `weights_only=True` and building its model from plain hparams.
- `sampling`: temperature, top-k and top-p on one step's logits.
- `device`: the `device=` key (auto, cpu, cuda[:N]) checked against the machine.

Names are imported on first use: the resume check opens a checkpoint's archive (`checkpoint`) before
Hydra starts, without torch.
"""

from __future__ import annotations

from rnnlm.lazy import lazy_getattr

_WHERE = {"LanguageModel": "rnnlm.inference.lm", "Score": "rnnlm.inference.lm"}

__getattr__ = lazy_getattr(__name__, _WHERE)

__all__ = sorted(_WHERE)
