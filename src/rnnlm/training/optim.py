"""Building the optimiser and scheduler from their configs, clipping, and per-step learning-rate scaling.

The LightningModule's hooks (`configure_optimizers`, `configure_gradient_clipping`, `optimizer_step`)
call these; nothing here holds state of its own.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from hydra.utils import instantiate

from rnnlm.errors import UserError
from rnnlm.training.nt_asgd import NTASGD

# Optimisers that take the sparse gradient of `model.sparse_embedding=true`.
SPARSE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adagrad)  # (SparseAdam takes no dense gradient)


class NonFiniteError(UserError):
    """The loss or the gradients became inf/NaN (trainer.detect_nonfinite=true)."""


def check_sparse_support(optimizer: torch.optim.Optimizer) -> None:
    name = type(optimizer).__name__
    if not isinstance(optimizer, SPARSE_OPTIMIZERS) or optimizer.defaults.get("fused"):
        raise UserError(
            f"model.sparse_embedding=true gives the embedding a sparse gradient, which {name}"
            f"{' (fused)' if optimizer.defaults.get('fused') else ''} cannot take: use optim=sgd "
            "(without fused) or set model.sparse_embedding=false"
        )


def plain_sgd(optimizer: Any) -> bool:
    """SGD whose update is exactly p -= lr * grad (so scaling lr is scaling grad)."""
    optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps it
    return type(optimizer) is torch.optim.SGD and all(
        not g["momentum"]
        and not g["weight_decay"]
        and not g.get("maximize", False)
        and not g.get("differentiable", False)
        and not isinstance(g["lr"], torch.Tensor)
        for g in optimizer.param_groups
    )


def build_optimizer(
    optim: dict,
    params: list[torch.nn.Parameter],
    sparse: torch.nn.Parameter | None,
    total_steps: float,
) -> torch.optim.Optimizer:
    """The optimiser of `optim` (a `_target_` config) over `params`; `sparse` is the embedding weight
    when it takes a sparse gradient, `total_steps` the run's length (for NT-ASGD's `average_after`)."""
    groups: Any = params
    if sparse is not None:
        # The sparse gradient in a group of its own, so the dense ones keep the multi-tensor
        # (foreach) update: torch.optim falls back to one update per tensor in a group with a
        # sparse gradient.
        groups = [{"params": [p for p in params if p is not sparse]}, {"params": [sparse]}]
    optimizer = instantiate(optim, _partial_=True)(groups)
    if sparse is not None:
        check_sparse_support(optimizer)
    if isinstance(optimizer, NTASGD) and optimizer.average_after is not None:
        if not math.isfinite(total_steps):
            raise UserError(
                "optim.average_after is a fraction of the run, which has no end here: set "
                "trainer.max_steps or trainer.max_epochs, or set optim.average_after=null"
            )
        optimizer.plan(int(total_steps))
    return optimizer


def build_scheduler(
    scheduler: dict | None, optimizer: torch.optim.Optimizer, total_steps: float
) -> dict[str, Any] | None:
    """Lightning's lr_scheduler entry for the `scheduler` config (None: a constant rate).

    A plateau scheduler is stepped by the module after each validation, with that validation's loss
    (see `step_plateau`): Lightning's own stepping at epoch ends would fail when no validation has run
    yet in the epoch (validation every N steps across epochs) and would reuse a stale loss otherwise.
    """
    cfg = dict(scheduler or {})
    if not cfg:
        return None
    interval = cfg.pop("interval", "epoch")
    monitor = cfg.pop("monitor", "val/loss")
    if cfg.get("T_max", "unset") is None:  # cosine over the whole run
        cfg["T_max"] = max(int(total_steps), 1)
    built = instantiate(cfg, optimizer=optimizer)
    plateau = isinstance(built, torch.optim.lr_scheduler.ReduceLROnPlateau)
    return {"scheduler": built, "interval": interval, "monitor": monitor, "strict": not plateau}


def step_plateau(scheduler_configs: Iterable[Any], val_loss: float) -> None:
    for config in scheduler_configs:
        if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config.scheduler.step(val_loss)


def clip_into_lr(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    max_norm: float,
    norm: torch.Tensor,
) -> None:
    """Clip the gradients of `params` (global norm `norm`) to `max_norm`.

    For plain SGD (no momentum, no weight decay) the clipping factor goes into this step's learning
    rate instead of into the gradients: p - (lr * c) * g is p - lr * (c * g), without a pass over every
    gradient (`scaled_lr` puts the learning rate back after the step).
    """
    if plain_sgd(optimizer):
        coef = min(1.0, float(max_norm) / (float(norm) + 1e-6))
        if coef < 1.0:
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * coef
    else:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)


@contextlib.contextmanager
def scaled_lr(optimizer: Any, scale: float) -> Iterator[None]:
    """This step's learning rates times `scale` (variable-length BPTT: window length / bptt), and the
    scheduled rates restored afterwards, also where clipping scaled them further (`clip_into_lr`)."""
    saved = [group["lr"] for group in optimizer.param_groups]
    if scale != 1.0:
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * scale
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, saved, strict=True):
            group["lr"] = lr
