"""Reading rnnlm checkpoints safely: `weights_only=True` always, one clear error for each failure.

torch is imported inside the loader, so `check_archive` can vet a file before torch is loaded.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnlm.errors import UserError

if TYPE_CHECKING:
    import torch

FORMAT = 1  # bumped when the layout of checkpoint["rnnlm"] changes


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""


def _existing_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(
            f"checkpoint {p} does not exist: pass ckpt_path=<file>.ckpt of a run under outputs/"
        )
    if p.is_dir():
        raise CheckpointError(
            f"checkpoint {p} is a folder: pass a .ckpt file, e.g. {p}/checkpoints/last.ckpt"
        )
    return p


def _not_an_archive(p: Path) -> CheckpointError:
    return CheckpointError(
        f"{p} is not a PyTorch checkpoint or is truncated (not the zip archive torch.save writes): "
        "use another checkpoint (e.g. the run's checkpoints/best.ckpt), or copy it again"
    )


def check_archive(path: str | Path) -> None:
    """Vet a checkpoint file without torch: the zip archive torch.save writes, every member matching
    its CRC. A truncated file, random bytes or a half-finished copy fail here, in one line."""
    p = _existing_file(path)
    try:
        with zipfile.ZipFile(p) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
        raise _not_an_archive(p) from None
    except OSError as err:
        raise CheckpointError(f"checkpoint {p} cannot be read ({err.strerror or err})") from None
    if damaged is not None:
        raise CheckpointError(
            f"{p} is damaged: its part {damaged} does not match its checksum: use another "
            "checkpoint (e.g. the run's checkpoints/best.ckpt), or copy it again"
        )


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """The checkpoint dict, loaded with `weights_only=True` (never runs code from the file); `mmap`:
    the tensors are mapped from the file, not read (a look at the metadata costs little)."""
    import torch

    p = _existing_file(path)
    if not zipfile.is_zipfile(p):  # before torch.load, which reads garbage as a legacy pickle
        raise _not_an_archive(p)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise CheckpointError(
                f"checkpoint {p} holds Python objects that could run code when loaded; rnnlm loads only "
                f"plain tensors and containers (weights_only=True) and refuses it: re-save it with rnnlm"
            ) from None
        raise CheckpointError(
            f"{p} is not a PyTorch checkpoint ({first}): use a checkpoint written by src/train.py"
        ) from None
    except Exception as err:  # any other failure to unpickle: garbage, truncated, or another format
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{p} is not a PyTorch checkpoint or is truncated ({first}): use a checkpoint written by "
            "src/train.py (e.g. the run's checkpoints/best.ckpt), or copy it again"
        ) from None
    if not isinstance(ckpt, dict) or "rnnlm" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{p} was not saved by rnnlm (no 'rnnlm' section): use a checkpoint written by src/train.py"
        )
    return ckpt


def check_fits(
    ckpt: dict[str, Any],
    state_dict: dict[str, Any],
    tokenizer: dict | None,
    corpus: str | None,
    path: str | Path,
) -> None:
    """A checkpoint to resume must hold this model's parameters, shape for shape, and come from the
    text and vocabulary this corpus gives now; otherwise loading it fails deep inside torch (or trains
    on other text without a word), after the run's files changed."""
    saved = ckpt["state_dict"]
    missing = [k for k in state_dict if k not in saved]
    extra = [k for k in saved if k not in state_dict]
    shapes = [
        f"{k} is {tuple(saved[k].shape)} there, {tuple(v.shape)} here"
        for k, v in state_dict.items()
        if k in saved and tuple(saved[k].shape) != tuple(v.shape)
    ]
    problems = (
        shapes + [f"{k} is missing there" for k in missing] + [f"{k} is not here" for k in extra]
    )
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit this run's model ({problems[0]}"
            f"{f', and {len(problems) - 1} more' if len(problems) > 1 else ''}): it was written by "
            "another model; resume the run it belongs to, or start a new run"
        )
    meta = ckpt.get("rnnlm") or {}
    changed_text = (
        meta.get("corpus") is not None and corpus is not None and meta["corpus"] != corpus
    )
    changed_vocab = (
        meta.get("tokenizer") is not None
        and tokenizer is not None
        and meta["tokenizer"] != tokenizer
    )
    if changed_text or changed_vocab:
        raise CheckpointError(
            f"checkpoint {path} was trained on other text than the corpus files hold now "
            f"({'another vocabulary' if changed_vocab else 'same vocabulary, other content'}): they "
            "changed since the run started; put the original files back to resume, or start a new "
            "run on the new text"
        )


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
