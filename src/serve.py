"""Serve a model over HTTP: `python src/serve.py ckpt_path=<file> port=8000` (`rnnlm-serve`).

A shim for running from a checkout; the command itself is rnnlm.cli.serve_cli (configs: rnnlm/conf/serve.yaml).
"""

from rnnlm.cli import serve_cli

if __name__ == "__main__":
    serve_cli()
