"""Export a model: `python src/export.py hub ckpt_path=<file> out=<folder>` (`rnnlm-export`), or `onnx`.

A shim for running from a checkout; the command itself is rnnlm.cli.export_cli (configs: rnnlm/conf/export.yaml).
"""

from rnnlm.cli import export_cli

if __name__ == "__main__":
    export_cli()
