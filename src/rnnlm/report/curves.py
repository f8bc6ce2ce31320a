"""Validation curves of a multirun's jobs, and report.png. A job's curve is its `validations.jsonl`
(written by every run, whatever its loggers: rnnlm.training.trackers.ValidationHistory); runs written
before it existed are read from their TensorBoard events."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from rnnlm.report.jobs import Report

HISTORY_FILE = "validations.jsonl"


@dataclass
class CurvePoint:
    """One validation of a job: where training stood (tokens, seconds) and the perplexity then."""

    tokens: float
    seconds: float | None  # `train/time_s`; None in runs written before it was logged
    ppl: float


def read_history(job_dir: Path) -> list[CurvePoint] | None:
    """The job's `validations.jsonl`, by step (a resumed run repeats none; a line cut by a kill is
    skipped); None if the job has none."""
    path = Path(job_dir) / HISTORY_FILE
    if not path.is_file():
        return None
    by_step: dict[int, CurvePoint] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            point = CurvePoint(float(row["tokens"]), row.get("seconds"), float(row["val_ppl"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if math.isfinite(point.ppl):
            by_step[int(row.get("step", len(by_step)))] = point
    return [by_step[step] for step in sorted(by_step)]


def val_curve(job_dir: Path) -> list[CurvePoint]:
    """The job's validations in order: its validations.jsonl, or else its TensorBoard events
    (`train/tokens_seen` and `train/time_s` are logged at the same step as `val/ppl`)."""
    history = read_history(job_dir)
    if history is not None:
        return history
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
