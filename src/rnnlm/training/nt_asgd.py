"""NT-ASGD (Merity et al. 2017): SGD that switches to averaged SGD once validation stops improving.

`NTASGD` is a plain `torch.optim.Optimizer`. It steps as SGD; the training loop reports each validation
loss to `observe()`, and when the loss has not improved for `nonmono` validations (AWD-LSTM's test: the
new loss is worse than the best one from before the last `nonmono` validations) it starts averaging:
from then on each step also updates `ax`, the mean of every iterate since the switch (what
`torch.optim.ASGD(t0=0, lambd=0)` keeps, and what AWD-LSTM swaps in to evaluate and save). The switch, the
history of validation losses and the average live in the optimizer's own state, so they are saved in and
restored from checkpoints with it.

`nonmono=None` leaves the switch to `average_after` alone. `average_after` (a fraction of the run) is a
deadline for a time budget: averaging starts once that share of the run's steps is done even if
validation has not triggered it yet: the averaged iterate is much better than the last one, and at a
high learning rate the validation curve is too noisy for the non-monotone test to fire at a useful
time within a short run (docs/quality.md has the measurements). The training loop calls `plan(total_steps)` to turn the fraction into a step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch
from torch import Tensor

from rnnlm import schema

log = logging.getLogger(__name__)


class NTASGD(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable,
        lr: float = 30.0,
        nonmono: int | None = 5,
        weight_decay: float = 0.0,
        average_from_start: bool = False,
        average_after: float | None = None,
    ) -> None:
        schema.check(
            "optim", lr=lr, nonmono=nonmono, weight_decay=weight_decay, average_after=average_after
        )
        self.average_after = average_after
        defaults = {"lr": lr, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        # Kept in the first param group so that it is part of state_dict().
        self.param_groups[0].setdefault(
            "nt_asgd",
            {
                "nonmono": None if nonmono is None else int(nonmono),
                "history": [],
                "averaging": bool(average_from_start),
                "n_avg": 0,
                "switched_at": 0 if average_from_start else None,
                "steps": 0,
                "average_at_step": None,  # set by plan(): the `average_after` deadline as a step
            },
        )

    def plan(self, total_steps: int) -> None:
        """Turn `average_after` into a step of a run of `total_steps` optimizer steps (no-op if unset)."""
        if self.average_after is not None:
            self._nt["average_at_step"] = max(1, math.ceil(self.average_after * total_steps))

    @property
    def _nt(self) -> dict:
        return self.param_groups[0]["nt_asgd"]

    @property
    def averaging(self) -> bool:
        return bool(self._nt["averaging"])

    @property
    def n_averaged(self) -> int:
        return int(self._nt["n_avg"])

    def observe(self, val_loss: float) -> bool:
        """Record one validation loss; True if this one switched averaging on."""
        nt = self._nt
        history = nt["history"]
        switch = (
            not nt["averaging"]
            and nt["nonmono"] is not None
            and len(history) > nt["nonmono"]
            and val_loss > min(history[: -nt["nonmono"]])
        )
        history.append(float(val_loss))
        if switch:
            nt["averaging"] = True
            nt["switched_at"] = len(history)
        return switch

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 (torch's signature)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        nt = self._nt
        nt["steps"] = nt.get("steps", 0) + 1
        deadline = nt.get("average_at_step")
        if not nt["averaging"] and deadline is not None and nt["steps"] >= deadline:
            nt["averaging"] = True
            nt["switched_at"] = len(nt["history"])
            log.info(
                "NT-ASGD: averaging from step %d on (optim.average_after=%s of the run; evaluation "
                "and checkpoints use the averaged weights)",
                nt["steps"],
                self.average_after,
            )
        if nt["averaging"]:
            nt["n_avg"] += 1
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is not None:
                    grad = p.grad
                    if grad.is_sparse:
                        raise RuntimeError("NTASGD does not take sparse gradients")
                    if wd:
                        grad = grad.add(p, alpha=wd)
                    p.add_(grad, alpha=-lr)
                if nt["averaging"]:
                    # Every parameter, with a gradient this step or not (an adaptive-softmax cluster no
                    # target reached): the average is over all n_avg iterates, unchanged ones included.
                    state = self.state[p]
                    if "ax" not in state:
                        state["ax"] = p.detach().clone()
                    else:
                        state["ax"].add_(p - state["ax"], alpha=1.0 / nt["n_avg"])
        return loss

    def averaged(self, p: Tensor) -> Tensor:
        """The averaged value of parameter p (p itself before any averaged step)."""
        return self.state[p].get("ax", p) if p in self.state else p

    def swap_in(self, params: Iterable[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Give `params` their averaged values; returns what `restore` needs to put their own back."""
        saved = []
        for p in {id(p): p for p in params}.values():
            ax = self.averaged(p)
            if ax is not p:
                saved.append((p, p.detach().clone()))
                p.data.copy_(ax)
        return saved

    @staticmethod
    def restore(saved: list[tuple[Tensor, Tensor]]) -> None:
        for p, value in saved:
            p.data.copy_(value)


def find_nt_asgd(optimizers: Iterable) -> NTASGD | None:
    """The NTASGD among Lightning's (possibly wrapped) optimizers, if any."""
    for opt in optimizers:
        opt = getattr(opt, "optimizer", opt)  # LightningOptimizer wraps the real one
        if isinstance(opt, NTASGD):
            return opt
    return None


def averaging(optimizers: Iterable) -> NTASGD | None:
    """The NTASGD among `optimizers` once it has started averaging, else None."""
    opt = find_nt_asgd(optimizers)
    return opt if opt is not None and opt.averaging else None


class AverageSwap:
    """Validation, test and the training-time samples score the average once averaging has started:
    it is swapped into the model's parameters for their duration, and the live weights put back."""

    def __init__(self) -> None:
        self.saved: list[tuple[Tensor, Tensor]] | None = None  # live weights while swapped out
        # A checkpoint loaded to test holds the weights to score (the average, if there was one then).
        self.weights_from_checkpoint = False

    def swap_in(self, optimizers: Iterable, params: Iterable[Tensor]) -> bool:
        """Swap the average in (where there is one, and it is not in already); True if this call did."""
        opt = averaging(optimizers)
        if opt is None or self.saved is not None or self.weights_from_checkpoint:
            return False
        self.saved = opt.swap_in(params)
        return True

    def swap_back(self) -> None:
        if self.saved is not None:
            NTASGD.restore(self.saved)
            self.saved = None


def average_into_state_dict(
    opt: NTASGD, named_params: Iterable[tuple[str, Tensor]], state_dict: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Put the average into a checkpoint's `state_dict` (what eval/generate load) and return the live
    weights it replaced, which ride along for an exact resume. Tied weights appear under both names."""
    live = {}
    for key, p in named_params:
        if key in state_dict:
            live[key] = state_dict[key]
            state_dict[key] = opt.averaged(p).detach().clone()
    return live


__all__ = ["NTASGD", "AverageSwap", "average_into_state_dict", "averaging", "find_nt_asgd"]
