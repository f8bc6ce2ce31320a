"""Train a language model: `python src/train.py model=lstm optim=sgd` (installed as `rnnlm-train`).

A shim for running from a checkout; the command itself is rnnlm.cli.train_cli (configs: rnnlm/conf/train.yaml).
"""

from rnnlm.cli import train_cli

if __name__ == "__main__":
    train_cli()
