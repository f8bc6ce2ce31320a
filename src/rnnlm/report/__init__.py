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

- `jobs`: a job folder's overrides, status and figures (`Job`, `Report`, `build_report`);
- `curves`: validation curves from TensorBoard events and `report.png` (`val_curve`, `plot`);
- `render`: report.md, report.csv and the printed table (`write_report`, `table`);
- `command`: the `src/report.py` / `rnnlm-report` entry point.
"""

from rnnlm.report.curves import CurvePoint, plot, val_curve
from rnnlm.report.jobs import Job, Report, build_report, resolve_folder
from rnnlm.report.render import (
    REPORT_CSV,
    REPORT_MD,
    REPORT_PNG,
    summary_lines,
    table,
    write_report,
)

__all__ = [
    "REPORT_CSV",
    "REPORT_MD",
    "REPORT_PNG",
    "CurvePoint",
    "Job",
    "Report",
    "build_report",
    "plot",
    "resolve_folder",
    "summary_lines",
    "table",
    "val_curve",
    "write_report",
]
