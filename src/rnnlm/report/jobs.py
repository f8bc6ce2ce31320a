"""Reading a multirun folder: one `Job` per job folder (its overrides, status and result.json figures)
and the `Report` over all of them."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rnnlm.errors import UserError

OPTUNA_RESULTS = (
    "optimization_results.yaml"  # written by Hydra's Optuna sweeper into the sweep folder
)
NOT_STARTED = "not started"
RESULT_FILE = (
    "result.json"  # rnnlm/training/record.py (not imported: it would load torch and Lightning)
)

# The lines run_task (rnnlm/cli.py) logs when a job of a multirun fails.
_FAILED_IN_LOG = re.compile(r"job failed: (.*)")
# An error recorded through hydra.utils.instantiate: "Error in call to target 'x.Y': ValueError('...')".
_INSTANTIATE_ERROR = re.compile(r"^Error in call to target '[^']*': \w+\((['\"])(.*)\1\)$")


@dataclass
class Job:
    """One job folder of a multirun and what its result.json says."""

    name: str
    path: Path
    overrides: list[str] | None  # None: no .hydra/overrides.yaml
    status: str
    num_parameters: int | None = None
    best_val_ppl: float | None = None
    test_ppl: float | None = None
    best_val_bleu: float | None = None  # translation runs: BLEU and chrF (0-100)
    test_bleu: float | None = None
    test_chrf: float | None = None
    tokens_per_sec: float | None = None
    tokens_seen: int | None = None
    wall_time_s: float | None = None
    error: str = ""
    varying: list[str] = field(default_factory=list)  # overrides not shared by every job

    @property
    def label(self) -> str:
        shown = self.varying if self.varying else (self.overrides or [])
        return " ".join(short_override(o) for o in shown)


@dataclass
class Report:
    folder: Path
    jobs: list[Job]
    common: list[str]  # overrides every job has
    optuna: dict[str, Any] | None = None

    @property
    def translation(self) -> bool:
        """Whether the jobs translate (their result.json has BLEU): the table shows BLEU and chrF."""
        return any(j.best_val_bleu is not None or j.test_bleu is not None for j in self.jobs)

    @property
    def best(self) -> Job | None:
        scored = [j for j in self.jobs if j.best_val_ppl is not None]
        return min(scored, key=lambda j: j.best_val_ppl or 0.0) if scored else None


def short_override(override: str) -> str:
    """`model.dropout=0.13823212757154835` -> `model.dropout=0.1382` (Optuna's floats), for the eye only."""
    key, sep, value = override.partition("=")
    if sep and len(value) > 8 and re.fullmatch(r"-?\d+\.\d+(e-?\d+)?", value):
        return f"{key}={float(value):.4g}"
    return override


def resolve_folder(value: str) -> Path:
    """The multirun folder for `value`: a path, or `latest` (the newest under <outputs>/train/multiruns/)."""
    if value == "latest":
        root = Path(os.environ.get("RNNLM_OUTPUT_DIR", "outputs")) / "train" / "multiruns"
        sweeps = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
        if not sweeps:
            raise UserError(
                f"no multirun under {root}: run one first (`python src/train.py -m ...`)"
            )
        return sweeps[-1]  # folder names are timestamps
    folder = Path(value).expanduser()
    if not folder.exists():
        raise UserError(
            f"{value} does not exist: pass a multirun folder (outputs/train/multiruns/<timestamp>)"
        )
    if not folder.is_dir():
        raise UserError(
            f"{value} is not a folder: pass a multirun folder (outputs/train/multiruns/<timestamp>)"
        )
    return folder


def _is_job_folder(path: Path) -> bool:
    if not path.is_dir() or path.name.startswith("."):
        return False
    # Hydra names job folders by job number (hydra.sweep.subdir); another subdir still has .hydra/.
    return path.name.isdigit() or (path / ".hydra").is_dir() or (path / RESULT_FILE).is_file()


def _job_order(path: Path) -> tuple[int, int, str]:
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def find_jobs(folder: Path) -> list[Path]:
    """The job folders of a multirun, in job order."""
    jobs = sorted((p for p in folder.iterdir() if _is_job_folder(p)), key=_job_order)
    if jobs:
        return jobs
    hint = ""
    if (folder / RESULT_FILE).is_file() or (folder / ".hydra").is_dir():
        hint = ": it is a single run; a report compares the jobs of a multirun (`python src/train.py -m ...`)"
    else:
        sweeps = sorted(
            p for p in folder.iterdir() if p.is_dir() and (p / "multirun.yaml").is_file()
        )
        if sweeps:
            hint = f": it holds multiruns, pass one of them (e.g. {sweeps[-1]})"
    raise UserError(f"no jobs in {folder} (no job folders like {folder / '0'}){hint}")


def _read_overrides(job_dir: Path) -> list[str] | None:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        return [str(o) for o in OmegaConf.load(path)]  # type: ignore[union-attr]
    except Exception:  # a half-written file: the job still gets a row
        return None


def _failure_in_log(job_dir: Path) -> str | None:
    for log in job_dir.glob("*.log"):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        found = _FAILED_IN_LOG.findall(text)
        if found:
            return found[-1].strip()
    return None


def _number(value: Any, kind: type = float) -> Any:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = kind(value)
    except (TypeError, ValueError):
        return None
    return out if not isinstance(out, float) or math.isfinite(out) else None


def _read_result(job_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((job_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _clean_error(error: Any) -> str:
    text = " ".join(str(error or "").split())
    found = _INSTANTIATE_ERROR.match(text)
    return found.group(2) if found else text


def read_job(job_dir: Path) -> Job:
    """A job's row: result.json's figures, or its status when there is no result."""
    overrides = _read_overrides(job_dir)
    result = _read_result(job_dir)
    if result is None:
        failure = _failure_in_log(job_dir)
        if failure:
            return Job(job_dir.name, job_dir, overrides, "failed", error=failure)
        if (job_dir / RESULT_FILE).exists():
            error = f"{RESULT_FILE} is unreadable"
        elif (job_dir / ".hydra").is_dir():
            error = f"no {RESULT_FILE}: training never started (see {job_dir.name}/*.log)"
        else:
            error = "empty job folder: the job never started"
        return Job(job_dir.name, job_dir, overrides, NOT_STARTED, error=error)
    return Job(
        name=job_dir.name,
        path=job_dir,
        overrides=overrides,
        status=str(result.get("status") or "unknown"),
        num_parameters=_number(result.get("num_parameters"), int),
        best_val_ppl=_number(result.get("best_val_ppl")),
        test_ppl=_number(result.get("test_ppl")),
        best_val_bleu=_number(result.get("best_val_bleu")),
        test_bleu=_number(result.get("test_bleu")),
        test_chrf=_number(result.get("test_chrf")),
        tokens_per_sec=_number(result.get("tokens_per_sec")),
        tokens_seen=_number(result.get("tokens_seen"), int),
        wall_time_s=_number(result.get("wall_time_s")),
        error=_clean_error(result.get("error")),
    )


def _read_optuna(folder: Path) -> dict[str, Any] | None:
    path = folder / OPTUNA_RESULTS
    if not path.is_file():
        return None
    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def build_report(folder: Path) -> Report:
    """Read every job of the multirun in `folder`."""
    jobs = [read_job(p) for p in find_jobs(folder)]
    known = [j.overrides for j in jobs if j.overrides is not None]
    common: list[str] = []
    if len(known) > 1:
        common = [o for o in known[0] if all(o in other for other in known[1:])]
    for j in jobs:
        j.varying = [o for o in (j.overrides or []) if o not in common]
    return Report(folder=folder, jobs=jobs, common=common, optuna=_read_optuna(folder))
