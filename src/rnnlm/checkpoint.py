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


def build_from_checkpoint(
    cfg: dict[str, Any], classes: dict[str, type], path: str | Path, what: str, **kwargs: Any
) -> Any:
    """`cfg` (a `_target_` and keyword arguments, read from a checkpoint) built as one of `classes`.

    A checkpoint's config is data: `hydra.utils.instantiate` would call whatever a crafted file names
    (and any nested `_target_` first), which is the code execution `weights_only=True` keeps out. So
    only rnnlm's own classes are built, directly, from plain arguments.
    """
    target = cfg.get("_target_")
    cls = classes.get(target) if isinstance(target, str) else None
    refuse = "rnnlm refuses to build it: use a checkpoint written by src/train.py"
    if cls is None:
        raise CheckpointError(
            f"checkpoint {path}: its {what} config names {target!r}, not one of "
            f"{', '.join(sorted(classes))}; {refuse}"
        )
    args = {k: v for k, v in cfg.items() if not k.startswith("_")}
    nested = _nested_target(args, what)
    if nested is not None:
        raise CheckpointError(
            f"checkpoint {path}: its {what} config holds a _target_ at {nested}; {refuse}"
        )
    return cls(**args, **kwargs)


def _nested_target(value: Any, where: str) -> str | None:
    """The dotted key of the first `_target_` inside `value`, or None."""
    if isinstance(value, dict):
        if "_target_" in value:
            return where
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _nested_target(item, f"{where}.{key}")
        if found is not None:
            return found
    return None
