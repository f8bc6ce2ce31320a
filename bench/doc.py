"""docs/benchmarks.md holds two reports: `make bench` (speed) and `make bench-quality` (quality in a time
budget). Each script rewrites only its own section, between its markers, and keeps the rest of the file."""

from __future__ import annotations

import os
from pathlib import Path

HEADER = (
    "# Benchmarks\n\n"
    "Written by the benchmark scripts; each rewrites only its own section. Speed: `make bench` "
    "(bench/run.py). Quality in a time budget: `make bench-quality` (bench/quality.py; the "
    "configurations are explained in [quality.md](quality.md)).\n"
)


def write_section(path: Path, name: str, body: str) -> None:
    """Put `body` between `<!-- name:begin -->` and `<!-- name:end -->` in `path` (atomically)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.is_file() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
