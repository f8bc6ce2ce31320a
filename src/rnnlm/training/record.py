"""`result.json` in every run folder: what the run is, how it went, its figures. Sweep reports read it."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

RESULT_FILE = "result.json"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


class RunRecord:
    """Keeps `<run>/result.json` current: status running -> finished | failed | interrupted."""

    def __init__(self, out_dir: Path, run_name: str) -> None:
        self.path = Path(out_dir) / RESULT_FILE
        self.started = time.time()
        previous = self.read(self.path.parent) or {}
        self.data: dict[str, Any] = {
            "run_name": run_name,
            "status": "running",
            "started": previous.get("started", self.started),
            "wall_time_s": previous.get("wall_time_s", 0.0),
        }
        self._base_wall = float(
            self.data["wall_time_s"] or 0.0
        )  # time of earlier attempts (resume)
        self.update()

    @rank_zero_only
    def update(self, **fields: Any) -> None:
        self.data.update({k: _plain(v) for k, v in fields.items()})
        self.data["wall_time_s"] = round(self._base_wall + time.time() - self.started, 3)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    @staticmethod
    def read(run_dir: str | Path) -> dict[str, Any] | None:
        path = Path(run_dir) / RESULT_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None
