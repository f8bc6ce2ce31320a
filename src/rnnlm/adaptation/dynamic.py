"""Dynamic evaluation (Krause, Kahembwe, Murray and Renals 2018, "Dynamic Evaluation of Neural Sequence
Models", https://arxiv.org/abs/1709.07432): the model keeps learning from the text it is scoring.

Each window is scored first, with the weights as they are, and only then used for one SGD step, so no
token is ever predicted by weights that have seen it. A pull back toward the trained weights keeps the
model from drifting away from what it learnt:

    theta <- theta - lr * grad(mean loss of the window) + decay * (theta_trained - theta)

Text that stays on one subject for a while (an article, a play) gains most: the model adapts to its
names, words and style. The trained weights are restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from rnnlm import schema
from rnnlm.models.modes import eval_mode
from rnnlm.models.rnn_lm import detach_hidden  # the transformer's context detaches the same way


def check_settings(lr: float, decay: float) -> None:
    schema.check("dynamic", lr=lr, decay=decay)


def dynamic_nll(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    lr: float,
    decay: float = 0.0,
) -> tuple[float, int]:
    """(summed cross-entropy in nats, tokens scored) of consecutive windows (x, y), each (B, T), scored by
    `model.nll` with the hidden state carried across windows and one SGD step after each window.

    The model runs in eval mode (no dropout); its weights are restored on return.
    """
    check_settings(lr, decay)
    params = [p for p in model.parameters() if p.requires_grad]
    trained = [p.detach().clone() for p in params]
    hidden, nll, count = None, 0.0, 0
    with eval_mode(model):  # no dropout while scoring
        try:
            for x, y in batches:
                with torch.enable_grad():
                    loss, hidden = model.nll(x, y, hidden, reduction="sum")
                    grads = torch.autograd.grad(loss / y.numel(), params, allow_unused=True)
                nll += float(loss.detach())
                count += y.numel()
                with torch.no_grad():
                    for p, g, p0 in zip(params, grads, trained, strict=True):
                        if g is not None:
                            p.add_(g, alpha=-lr)
                        if decay:
                            p.add_(p0 - p, alpha=decay)
                hidden = detach_hidden(hidden)
        finally:
            with torch.no_grad():
                for p, p0 in zip(params, trained, strict=True):
                    p.copy_(p0)
    return nll, count


__all__ = ["check_settings", "dynamic_nll"]
