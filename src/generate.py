"""Sample text: `python src/generate.py ckpt_path=<file> prompt="ROMEO:" max_new_tokens=300` (`rnnlm-generate`).

A shim for running from a checkout; the command itself is rnnlm.cli.generate_cli (configs: rnnlm/conf/generate.yaml).
"""

from rnnlm.cli import generate_cli

if __name__ == "__main__":
    generate_cli()
