"""Reading rnnlm checkpoints safely: `weights_only=True` always, one clear error for each failure."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from rnnlm.errors import UserError

FORMAT = 1  # bumped when the layout of checkpoint["rnnlm"] changes


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict, loaded with `weights_only=True` (never runs code from the file)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(
            f"checkpoint {p} does not exist: pass ckpt_path=<file>.ckpt of a run under outputs/"
        )
    if p.is_dir():
        raise CheckpointError(
            f"checkpoint {p} is a folder: pass a .ckpt file, e.g. {p}/checkpoints/last.ckpt"
        )
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise CheckpointError(
                f"checkpoint {p} holds Python objects that could run code when loaded; rnnlm loads only "
                f"plain tensors and containers (weights_only=True) and refuses it: re-save it with rnnlm"
            ) from None
        raise CheckpointError(f"{p} is not a PyTorch checkpoint ({first})") from None
    except Exception as err:  # any other failure to unpickle: garbage, truncated, or another format
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{p} is not a PyTorch checkpoint or is truncated ({first})"
        ) from None
    if not isinstance(ckpt, dict) or "rnnlm" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{p} was not saved by rnnlm (no 'rnnlm' section): use a checkpoint written by src/train.py"
        )
    return ckpt
