"""The end of a multirun: one summary of the jobs that failed, and a non-zero exit status.

A failed job is recorded in its result.json and the sweep goes on (rnnlm.cli.run_task); Hydra would
otherwise end the sweep with the traceback of the first failed job. Registered in conf/hydra/default.yaml.
Reads the job folders, so it works whatever launcher ran the jobs (in-process, submitit, SLURM).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rnnlm.errors import EXIT_FAILED


class FailedJobsSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rnnlm.report import build_report

        folder = Path(str(config.hydra.sweep.dir))
        if not folder.is_dir():
            return
        try:
            jobs = build_report(folder).jobs
        except ValueError:  # no job folders: nothing ran, Hydra has said why
            return
        failed = [j for j in jobs if j.status not in ("finished", "running")]
        if not failed:
            return
        what = "; ".join(
            f"job {j.name} ({j.label or 'no overrides'}): {j.error or j.status}" for j in failed
        )
        print(
            f"error: {len(failed)} of {len(jobs)} jobs did not finish: {what} "
            f"(each job's result.json and log are in {folder}; `make report RUN={folder}` compares them)",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(EXIT_FAILED)
