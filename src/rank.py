"""Likelihood ranking: `python src/rank.py ckpt_path=<file> context="..." candidates='["a", "b"]'` (`rnnlm-rank`).

A shim for running from a checkout; the command itself is rnnlm.cli.rank_cli (configs: rnnlm/conf/rank.yaml).
"""

from rnnlm.cli import rank_cli

if __name__ == "__main__":
    rank_cli()
