"""Translate: `python src/translate.py ckpt_path=<file> text="Where is the station?"` (`rnnlm-translate`).

A shim for running from a checkout; the command itself is rnnlm.cli.translate_cli (configs: rnnlm/conf/translate.yaml).
"""

from rnnlm.cli import translate_cli

if __name__ == "__main__":
    translate_cli()
