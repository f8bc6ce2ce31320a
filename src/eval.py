"""Score a checkpoint: `python src/eval.py ckpt_path=<file> [data.path=<folder>] [eval.batch_size=N]` (`rnnlm-eval`).

A shim for running from a checkout; the command itself is rnnlm.cli.eval_cli (configs: rnnlm/conf/eval.yaml).
"""

from rnnlm.cli import eval_cli

if __name__ == "__main__":
    eval_cli()
