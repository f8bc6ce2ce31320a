"""The parallel cells in everything around them: src/train.py, checkpoints, eval, generate, rank,
search and the LanguageModel API (the resume of one is in test_reliability's SIGKILL test)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_train_script, run_train_script_cases, tiny_overrides

NEW_CELLS = ["mingru", "minlstm", "qrnn", "hawk", "mlstm"]
# docs/cells.md's single-run commands (its sweep is test_budget.py's), run at tiny sizes
DOC_COMMANDS = [
    line.split("#")[0].split()[2:]
    for line in (REPO_ROOT / "docs" / "cells.md").read_text().splitlines()
    if line.startswith("python src/train.py ") and " -m " not in line
]


def _doc_case(command: list[str], corpus: Path, out: Path) -> list[str]:
    """The command with tiny sizes for what it does not set itself."""
    keys = {o.split("=", 1)[0] for o in command}
    tiny = [o for o in tiny_overrides(corpus) if o.split("=", 1)[0] not in keys]
    return [*tiny, *command, "callbacks.text_sample.max_new_tokens=5", f"hydra.run.dir={out}"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> dict[str, Path]:
    """One debug=smoke run of each new cell, in one forked runner."""
    root = tmp_path_factory.mktemp("cells")
    extra = {"mlstm": ["model.heads=2", "model.chunk_size=4"]}
    cases = {
        cell: [*tiny_overrides(corpus_dir), f"model={cell}", *extra.get(cell, []),
               "callbacks.text_sample.max_new_tokens=5", f"hydra.run.dir={root / cell}"]
        for cell in NEW_CELLS
    }  # fmt: skip
    assert len(DOC_COMMANDS) == 3, DOC_COMMANDS
    for n, command in enumerate(DOC_COMMANDS):
        cases[f"doc{n}"] = _doc_case(command, corpus_dir, root / f"doc{n}")
    for cell, out in run_train_script_cases(cases, root / "cases").items():
        assert out.returncode == 0, (cell, out.stderr[-2000:])
        if cell in NEW_CELLS:
            assert f"model: {cell}," in out.stderr + out.stdout
    return {cell: root / cell / "checkpoints" / "best.ckpt" for cell in NEW_CELLS}


@pytest.mark.parametrize("cell", NEW_CELLS)
def test_a_new_cell_loads_scores_generates_embeds_and_ranks(trained: dict, cell: str) -> None:
    from rnnlm import LanguageModel
    from rnnlm.applications import embed, rank_continuations

    lm = LanguageModel.load(trained[cell])
    assert lm.model.cell == cell
    assert math.isfinite(lm.score("the cat sat on a mat\n").perplexity)
    text = lm.generate("the cat", max_new_tokens=8, seed=0)
    assert text.startswith("the cat") and text == lm.generate("the cat", max_new_tokens=8, seed=0)
    assert embed(lm, ["the cat", "a red car ran"]).shape == (2, lm.model.hidden_dim)
    ranked = rank_continuations(lm, "the cat", ["sat", "ran on a mat"])
    assert sorted(r.candidate for r in ranked) == ["ran on a mat", "sat"]


def _run_script(script: str, ckpt: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, f"src/{script}", f"ckpt_path={ckpt}", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_rank_reads_a_new_cells_checkpoint(trained: dict) -> None:
    # The README's own syntax: a list in Hydra's syntax (a JSON string works too).
    out = _run_script(
        "rank.py", trained["hawk"], "context='the cat'", 'candidates=["sat", "ran", "the big"]'
    )
    assert out.returncode == 0 and "'the big'" in out.stdout, out.stderr[-2000:]


@pytest.mark.slow
def test_eval_generate_and_search_read_a_new_cells_checkpoint(
    trained: dict, corpus_dir: Path
) -> None:
    """The same code paths as LanguageModel's (tested above), through each command's entry point."""
    ckpt = trained["hawk"]
    out = _run_script("eval.py", ckpt)
    assert out.returncode == 0 and "| test |" in out.stdout, out.stderr[-2000:]
    out = _run_script("generate.py", ckpt, "prompt=the", "max_new_tokens=10", "seed=1")
    assert out.returncode == 0 and out.stdout.startswith("the"), out.stderr[-2000:]
    out = _run_script(
        "search.py", ckpt, f"corpus={corpus_dir / 'valid.txt'}", "query=red car", "top_k=2"
    )
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
def test_a_new_cell_trains_under_ddp(corpus_dir: Path, tmp_path: Path) -> None:
    out = run_train_script(
        [*tiny_overrides(corpus_dir), "model=qrnn", "trainer=ddp_cpu", f"hydra.run.dir={tmp_path}"],
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
