"""`result.json` in every run folder: what the run is, how it went, its figures, and every attempt.

    {"run_name": ..., "status": "finished", "best_val_ppl": ..., "test_ppl": ..., "steps": ..., ...,
     "attempts": [{"started": ..., "ended": ..., "status": "interrupted", "exit_code": 130,
                   "command": "python src/train.py ...", "error": "interrupted by SIGINT", ...},
                  {"started": ..., "resumed_from": ".../last.ckpt", "status": "finished", "exit_code": 0}]}

The top-level fields are the run as its latest attempt left it; figures are changed only by an
attempt that produced them, so a resume that fails keeps the run's best validation and test figures.
A resume that is refused before training starts never begins an attempt and writes nothing. An
attempt whose process was killed (SIGKILL, power loss) stays `running`; the next attempt marks it
`killed`. Sweep reports read this file (rnnlm/report/jobs.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnnlm.training.run_folder import RESULT_FILE, command_line, launch_rank

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


class RunRecord:
    """Keeps `<run>/result.json` current: status running -> finished | failed | interrupted.

    Nothing is written until `begin()`: a resumed run begins when its training starts (after its
    checkpoint is read, checked and restored), so a resume that fails before leaves the file as it was.
    """

    def __init__(self, out_dir: Path, run_name: str, resumed_from: str | None = None) -> None:
        self.path = Path(out_dir) / RESULT_FILE
        self.resumed_from = resumed_from
        self.data: dict[str, Any] = self.read(self.path.parent) or {}
        self.data["run_name"] = run_name
        if (
            "attempts" not in self.data
        ):  # a record written before attempts were kept: its one attempt
            old = {k: self.data.get(k) for k in ("started", "status", "error")}
            self.data["attempts"] = [{**old, "exit_code": None}] if old["status"] else []
        self.began: float | None = None
        self.on_begin: Callable[[], None] | None = None  # what else the attempt's start writes
        self._base_wall = float(self.data.get("wall_time_s") or 0.0)  # earlier attempts (resume)

    @property
    def attempt(self) -> dict[str, Any]:
        return self.data["attempts"][-1]

    def begin(self) -> None:
        """This attempt has started: add it to the history (an earlier one left `running` was killed)."""
        if self.began is not None:
            return
        self.began = time.time()
        for earlier in self.data["attempts"]:
            if earlier.get("status") == "running":
                earlier["status"] = "killed"
        self.data["attempts"].append(
            {
                "started": self.began,
                "status": "running",
                "command": command_line(),
                "resumed_from": self.resumed_from,
                "pid": os.getpid(),
            }
        )
        self.data.setdefault("started", self.began)
        self.data.update(status="running", error=None)
        self._write()
        if self.on_begin is not None and launch_rank() == 0:
            self.on_begin()

    def update(self, **fields: Any) -> None:
        """The run's figures (best_val_ppl, steps, ...) as this attempt has them now (written with
        the attempt: at once if it has begun, else when it begins)."""
        self.data.update({k: _plain(v) for k, v in fields.items()})
        if self.began is not None:
            self._write()

    def end(
        self, status: str, exit_code: int | None, error: str | None = None, **fields: Any
    ) -> None:
        """How this attempt ended; the run's status is its latest attempt's. An attempt that never
        began (a resume refused before its training started) changes nothing."""
        if self.began is None:
            return
        self.data.update({k: _plain(v) for k, v in fields.items()})
        self.attempt.update(status=status, exit_code=exit_code, ended=time.time(), error=error)
        self.data.update(status=status, error=error)
        self._write()

    def _write(self) -> None:
        if launch_rank() != 0:  # DDP: rank 0 keeps the record
            return
        if self.began is not None:
            self.data["wall_time_s"] = round(self._base_wall + time.time() - self.began, 3)
        tmp = self.path.with_name(f".{RESULT_FILE}.tmp-{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as err:  # a full disk: the previous record stays whole (written by rename)
            tmp.unlink(missing_ok=True)
            log.error("could not update %s (%s): it keeps its previous content", self.path, err)

    @staticmethod
    def read(run_dir: str | Path) -> dict[str, Any] | None:
        path = Path(run_dir) / RESULT_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
