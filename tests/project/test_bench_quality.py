"""The quality benchmark's quick mode (bench/quality.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT


# ==================================================================================================
# The quality benchmark's quick mode
# ==================================================================================================
def _bench_quality_quick(corpus: Path, out: Path, *args: str) -> str:
    """`python bench/quality.py --quick` on `corpus` for both levels; the written report."""
    proc = subprocess.run(
        [
            sys.executable,
            "bench/quality.py",
            "--quick",
            *args,
            "--word-data",
            str(corpus),
            "--char-data",
            str(corpus),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out.read_text()


@pytest.mark.slow  # the benchmark harness, like test_bench.py's; `make test-slow` runs it
def test_bench_quality_quick_writes_its_table(corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "quality.md"
    out.write_text("# Quality\n\nkept text\n")
    text = _bench_quality_quick(corpus_dir, out)
    assert "kept text" in text and "bench-quality:begin" in text
    for name in (
        "experiment=pytorch_example",
        "experiment=wt2_budget",
        "experiment=tinyshakespeare_char",
        "experiment=cells_word model=mingru",
        "experiment=cells_char model=mingru",
    ):
        assert name in text
    assert (
        "word level, training alone: rnnlm / classic" in text
        and "char level, training alone:" in text
    )
    assert "+ continuous cache (window" in text and "+ dynamic evaluation (lr" in text
    assert (
        "word level, mingru (experiment=cells_word model=mingru): perplexity / wt2_budget's" in text
    )
    assert "char level, mingru: " in text and "(target <= 1.38:" in text


@pytest.mark.slow
def test_bench_quality_variant_rows_name_their_overrides(corpus_dir: Path, tmp_path: Path) -> None:
    # docs/cells.md's `make bench-quality ARGS="--only cells --cell mingru"`, with another cell
    args = [
        "--only",
        "char,cells",
        "--cell",
        "qrnn",
        "--set",
        "model.dropout=0.3",
        "--no-adaptation",
    ]
    text = _bench_quality_quick(corpus_dir, tmp_path / "quality.md", *args)
    # the variant's row says what it changed; --no-adaptation leaves out the dynamic-evaluation row
    assert "| rnnlm (experiment=tinyshakespeare_char) with model.dropout=0.3 | char |" in text
    assert "| qrnn (experiment=cells_char model=qrnn) with model.dropout=0.3 | char |" in text
    assert "| qrnn (experiment=cells_word model=qrnn) with model.dropout=0.3 | word |" in text
    assert "+ dynamic evaluation (lr" not in text
