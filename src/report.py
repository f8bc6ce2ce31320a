"""Compare the jobs of a multirun: `python src/report.py outputs/train/multiruns/<timestamp>` (`rnnlm-report`).

A shim for running from a checkout; the command itself is rnnlm.report.command.main.
"""

import sys

from rnnlm.report.command import main

if __name__ == "__main__":
    sys.exit(main())
