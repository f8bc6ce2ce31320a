"""Checkpoints written atomically and read safely.

Writing: a temporary file in the same folder, fsync, then rename. A process killed while saving leaves
the previous `last.ckpt` intact (plus at most a stray temporary file), never a truncated one; a save
that fails (a full disk, a file-size limit) is one line that says so, with the previous file intact.
Lightning's default writer truncates the target first.

Reading: through rnnlm.inference.checkpoint.load_checkpoint (weights_only=True, one-line errors), also when
Lightning restores a run. `preload` reads a checkpoint ahead, to check it against the model before
anything is written; Lightning's own read of it then takes that copy instead of reading it again.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from rnnlm.errors import RunError
from rnnlm.inference.checkpoint import load_checkpoint

# errno -> (what happened, what to do about it)
_REASONS = {
    errno.ENOSPC: ("the disk is full", "free space on that disk"),
    errno.EDQUOT: ("the disk quota is used up", "free space in your quota"),
    errno.EFBIG: ("the file-size limit was reached", "raise it (ulimit -f unlimited)"),
}


class CheckpointWriteError(RunError):
    """A checkpoint could not be written; the previous one at that path is intact."""


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind `err` (torch's zip writer reports a failed write as a RuntimeError)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


def write_error(path: Path, err: BaseException) -> CheckpointWriteError | None:
    """The one-line error for a save that the disk refused, or None if `err` is something else."""
    cause = _os_error(err)
    if cause is None:
        return None
    reason, fix = _REASONS.get(cause.errno or 0, (cause.strerror or str(cause), "fix that"))
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
    then = (
        f"continue with `python src/train.py resume={run}`"
        if (path.parent / "last.ckpt").is_file()
        else "start the run again (it had no checkpoint to resume from)"
    )
    return CheckpointWriteError(
        f"could not write checkpoint {path}: {reason} ({kept}): {fix}, then {then}"
    )


# The file in which Lightning's ddp_spawn strategy hands the trained weights from its ranks back to the
# launching process (lightning.pytorch.strategies.launchers.multiprocessing): a bare state_dict.
SPAWN_WEIGHTS = ".temp.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    def __init__(self) -> None:
        super().__init__()
        self._preloaded: tuple[Path, dict[str, Any]] | None = None

    def preload(self, path: str | Path) -> dict[str, Any]:
        """Read `path` now; the next `load_checkpoint(path)` returns this copy."""
        ckpt = load_checkpoint(path)
        self._preloaded = (Path(path).resolve(), ckpt)
        return ckpt

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if self._preloaded is not None and self._preloaded[0] == Path(path).resolve():
            ckpt, self._preloaded = self._preloaded[1], None
            return ckpt
        if (
            Path(path).name == SPAWN_WEIGHTS
        ):  # ddp_spawn's weights, handed back by its ranks: no rnnlm part
            return torch.load(path, map_location=map_location, weights_only=True)
        return load_checkpoint(path)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:
            failure = write_error(path, err)
            if failure is None:
                raise
            raise failure from err
        finally:
            tmp.unlink(missing_ok=True)
