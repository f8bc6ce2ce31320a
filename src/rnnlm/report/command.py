"""The `src/report.py` command (`rnnlm-report`): write a multirun's report and print its table."""

from __future__ import annotations

import argparse
import sys

from rnnlm.errors import UserError
from rnnlm.report.jobs import resolve_folder
from rnnlm.report.render import (
    REPORT_CSV,
    REPORT_MD,
    REPORT_PNG,
    summary_lines,
    table,
    write_report,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Table and plot of a multirun's jobs: report.md, report.csv and report.png "
        "are written into the multirun folder."
    )
    parser.add_argument(
        "folder",
        help="a multirun folder (outputs/train/multiruns/<timestamp>), or `latest` for the newest",
    )
    args = parser.parse_args(argv)
    try:
        folder = resolve_folder(args.folder)
        report, warnings = write_report(folder)
    except UserError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        return 2
    except OSError as err:  # e.g. a read-only folder
        print(f"error: cannot write the report: {err}", file=sys.stderr, flush=True)
        return 1
    print(table(report))
    print()
    print("\n".join(summary_lines(report)))
    written = [REPORT_MD, REPORT_CSV] + ([] if warnings else [REPORT_PNG])
    print(f"wrote {', '.join(str(folder / name) for name in written)}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0
