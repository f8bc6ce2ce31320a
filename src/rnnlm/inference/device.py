"""The `device=` key of the eval, generate, search and rank commands, checked before a model loads."""

from __future__ import annotations

import torch

from rnnlm.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(
            f"device={name} is not a device: use device=auto, cpu or cuda[:N]"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device={name} but no CUDA GPU is available: use device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"device={name} but this machine has {torch.cuda.device_count()} GPU(s): use "
                f"device=cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
            )
    return device
