"""Sweep reports: `python src/report.py outputs/train/multiruns/<timestamp>` (or `make report RUN=...`).

Writes into the multirun folder:

- `report.md`: one table row per job (the overrides that differ between jobs, status, parameter count,
  best validation perplexity, test perplexity, tokens per second, wall time), the best job, the errors;
- `report.csv`: the same rows with the raw numbers, the error message and every override;
- `report.png`: validation perplexity (`val/ppl`) against training tokens (`train/tokens_seen`) and
  against minutes of training (`train/time_s`), one line per job, read from the jobs' TensorBoard events.

A job's figures come from its `result.json` (rnnlm/training/record.py). Jobs that failed, are still
running, or never started (a folder with only `.hydra/`, or an empty one) get a row with that status.
Statuses: those of result.json (`running`, `finished`, `failed`, `interrupted`), and `not started` for a
job folder without result.json (`failed` when its train.log says the job failed before training).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rnnlm.errors import UserError

REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
REPORT_PNG = "report.png"
OPTUNA_RESULTS = (
    "optimization_results.yaml"  # written by Hydra's Optuna sweeper into the sweep folder
)
NOT_STARTED = "not started"
RESULT_FILE = (
    "result.json"  # rnnlm/training/record.py (not imported: it would load torch and Lightning)
)

CSV_COLUMNS = [
    "job",
    "overrides",
    "status",
    "num_parameters",
    "best_val_ppl",
    "test_ppl",
    "tokens_per_sec",
    "wall_time_s",
    "tokens_seen",
    "error",
    "all_overrides",
]

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
    tokens_per_sec: float | None = None
    tokens_seen: int | None = None
    wall_time_s: float | None = None
    error: str = ""
    varying: list[str] = field(default_factory=list)  # overrides not shared by every job

    @property
    def label(self) -> str:
        shown = self.varying if self.varying else (self.overrides or [])
        return " ".join(_short(o) for o in shown)


@dataclass
class Report:
    folder: Path
    jobs: list[Job]
    common: list[str]  # overrides every job has
    optuna: dict[str, Any] | None = None

    @property
    def best(self) -> Job | None:
        scored = [j for j in self.jobs if j.best_val_ppl is not None]
        return min(scored, key=lambda j: j.best_val_ppl or 0.0) if scored else None


# -- reading the sweep -----------------------------------------------------------------------------
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


# -- TensorBoard curves ----------------------------------------------------------------------------
@dataclass
class CurvePoint:
    """One validation of a job: where training stood (tokens, seconds) and the perplexity then."""

    tokens: float
    seconds: float | None  # `train/time_s`; None in runs written before it was logged
    ppl: float


def val_curve(job_dir: Path) -> list[CurvePoint]:
    """The job's validations in order, from its TensorBoard events (`train/tokens_seen` and
    `train/time_s` are logged at the same step as `val/ppl`)."""
    tb = job_dir / "tensorboard"
    if not tb.is_dir():
        return []
    run_dirs = sorted({p.parent for p in tb.rglob("events.out.tfevents.*")})
    if not run_dirs:
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    by_step: dict[int, CurvePoint] = {}
    for run_dir in run_dirs:
        try:
            acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
            acc.Reload()
            tags = set(acc.Tags().get("scalars", []))
            if not {"val/ppl", "train/tokens_seen"} <= tags:
                continue
            tokens = {e.step: e.value for e in acc.Scalars("train/tokens_seen")}
            seconds = {}
            if "train/time_s" in tags:
                seconds = {e.step: e.value for e in acc.Scalars("train/time_s")}
            for e in acc.Scalars("val/ppl"):
                if e.step in tokens and math.isfinite(e.value):
                    by_step[e.step] = CurvePoint(tokens[e.step], seconds.get(e.step), e.value)
        except (
            Exception
        ):  # a truncated events file (job killed while writing): plot what is readable
            continue
    return [by_step[step] for step in sorted(by_step)]


def plot(report: Report, path: Path) -> int:
    """Write the validation-perplexity plot, against training tokens (left) and against the wall time
    spent training (right); return how many jobs have a line on it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    fig = Figure(figsize=(14, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    by_tokens, by_time = fig.subplots(1, 2, sharey=True)
    lines = 0
    values: list[float] = []
    for job in report.jobs:
        points = val_curve(job.path)
        if not points:
            continue
        values.extend(p.ppl for p in points)
        label = f"{job.name}: {job.label}" if job.label else job.name
        if len(label) > 70:
            label = label[:67] + "..."
        if job.status != "finished":
            label += f" ({job.status})"
        style = {
            "marker": "o",
            "markersize": 3,
            "linestyle": "-" if job.status == "finished" else "--",
        }
        (line,) = by_tokens.plot([p.tokens for p in points], [p.ppl for p in points], **style)
        line.set_label(label)
        timed = [p for p in points if p.seconds is not None]
        if timed:
            by_time.plot(
                [p.seconds / 60 for p in timed],
                [p.ppl for p in timed],
                color=line.get_color(),
                **style,
            )
        lines += 1
    by_tokens.set_xlabel("training tokens (train/tokens_seen)")
    by_tokens.set_ylabel("validation perplexity (val/ppl)")
    by_tokens.xaxis.set_major_formatter(EngFormatter())
    by_time.set_xlabel("minutes of training (train/time_s)")
    fig.suptitle(f"Validation perplexity: {report.folder.name}")
    for ax in (by_tokens, by_time):
        ax.grid(True, alpha=0.3)
    if lines:
        if min(values) > 0 and max(values) / min(values) > 3:
            by_tokens.set_yscale("log")
        by_tokens.legend(fontsize="small", loc="upper right")
    else:
        by_tokens.text(
            0.5,
            0.5,
            "no validation perplexity logged yet",
            ha="center",
            va="center",
            transform=by_tokens.transAxes,
        )
    fig.savefig(path, dpi=110)
    return lines


# -- tables ----------------------------------------------------------------------------------------
def _fmt_int(value: int | float | None) -> str:
    return "—" if value is None else f"{round(value):,}"


def _fmt_ppl(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(override: str) -> str:
    """`model.dropout=0.13823212757154835` -> `model.dropout=0.1382` (Optuna's floats), for the eye only."""
    key, sep, value = override.partition("=")
    if sep and len(value) > 8 and re.fullmatch(r"-?\d+\.\d+(e-?\d+)?", value):
        return f"{key}={float(value):.4g}"
    return override


def _md_overrides(overrides: list[str]) -> str:
    return " ".join(f"`{_md_cell(_short(o))}`" for o in overrides) if overrides else "(defaults)"


def table(report: Report) -> str:
    """The Markdown table, one row per job."""
    best = report.best
    rows = [
        "| job | overrides | status | parameters | best val ppl | test ppl | tokens/s | wall time |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for j in report.jobs:
        val = _fmt_ppl(j.best_val_ppl)
        if j is best and len(report.jobs) > 1:
            val = f"**{val}**"
        overrides = "?" if j.overrides is None else _md_overrides(j.varying)
        rows.append(
            f"| {_md_cell(j.name)} | {overrides} | {j.status} | {_fmt_int(j.num_parameters)} | {val} "
            f"| {_fmt_ppl(j.test_ppl)} | {_fmt_int(j.tokens_per_sec)} | {_fmt_time(j.wall_time_s)} |"
        )
    return "\n".join(rows)


def summary_lines(report: Report) -> list[str]:
    """Counts by status, the best job, Optuna's best parameters."""
    order = ["finished", "running", "interrupted", "failed", NOT_STARTED]
    counts: dict[str, int] = {}
    for j in sorted(report.jobs, key=lambda j: order.index(j.status) if j.status in order else 99):
        counts[j.status] = counts.get(j.status, 0) + 1
    lines = [f"{len(report.jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    best = report.best
    if best is not None:
        lines.append(
            f"best validation perplexity: {best.best_val_ppl:.3f}, job {best.name}"
            + (f" ({best.label})" if best.label else "")
        )
    if report.optuna and "best_params" in report.optuna:
        params = " ".join(f"{k}={v}" for k, v in report.optuna["best_params"].items())
        lines.append(
            f"Optuna best ({OPTUNA_RESULTS}): value {report.optuna.get('best_value')}, {params}"
        )
    return lines


def markdown(report: Report, with_plot: bool = True) -> str:
    parts = [
        f"# Sweep report: {report.folder.name}",
        "",
        f"Folder: `{report.folder.resolve()}`",
        "",
    ]
    if report.common:
        parts += [f"Every job: {_md_overrides(report.common)}", ""]
    parts += [table(report), ""]
    parts += [f"{line}  " for line in summary_lines(report)] + [""]
    errors = [j for j in report.jobs if j.error and j.status != "finished"]
    if errors:
        parts += ["## Jobs that did not finish", ""]
        parts += [f"- job {j.name} ({j.status}): {_md_cell(j.error)}" for j in errors] + [""]
    if with_plot:
        parts += [
            f"![validation perplexity against training tokens and training time]({REPORT_PNG})",
            "",
        ]
    return "\n".join(parts)


def write_csv(report: Report, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for j in report.jobs:
            writer.writerow(
                {
                    "job": j.name,
                    "overrides": " ".join(j.varying),
                    "status": j.status,
                    "num_parameters": j.num_parameters,
                    "best_val_ppl": j.best_val_ppl,
                    "test_ppl": j.test_ppl,
                    "tokens_per_sec": j.tokens_per_sec,
                    "wall_time_s": j.wall_time_s,
                    "tokens_seen": j.tokens_seen,
                    "error": j.error,
                    "all_overrides": " ".join(j.overrides or []),
                }
            )


def write_report(folder: Path) -> tuple[Report, list[str]]:
    """Write report.md, report.csv and report.png into `folder`; return the report and any warnings."""
    report = build_report(folder)
    warnings: list[str] = []
    with_plot = True
    try:
        plot(report, folder / REPORT_PNG)
    except ImportError as err:
        with_plot = False
        warnings.append(
            f"{REPORT_PNG} not written: {err.name or 'matplotlib'} is missing "
            "(install the sweep extra: pip install -e '.[sweep]')"
        )
    (folder / REPORT_MD).write_text(markdown(report, with_plot=with_plot), encoding="utf-8")
    write_csv(report, folder / REPORT_CSV)
    return report, warnings
