"""Semantic search: `python src/search.py ckpt_path=<file> corpus=<file or folder> query="..."` (`rnnlm-search`).

A shim for running from a checkout; the command itself is rnnlm.cli.search_cli (configs: rnnlm/conf/search.yaml).
"""

from rnnlm.cli import search_cli

if __name__ == "__main__":
    search_cli()
