"""A run saved by an earlier version of rnnlm (tests/fixtures/run_279e0ea, written before the package
split) still loads, evaluates, generates and resumes, with the figures that version gave."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_train_script, write_corpus

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "run_279e0ea"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The saved run, copied with its corpus and its folder names rewritten to this test's."""
    root = tmp_path_factory.mktemp("old")
    corpus = write_corpus(root / "corpus")
    run = root / "run"
    shutil.copytree(FIXTURE, run)
    for path in [*(run / ".hydra").glob("*.yaml"), run / "result.json"]:
        text = path.read_text().replace(EXPECTED["run_dir"], str(run))
        path.write_text(text.replace(EXPECTED["corpus_dir"], str(corpus)))
    return run


def test_old_checkpoint_evaluates_as_before(old_run: Path) -> None:
    corpus = old_run.parent / "corpus"
    out = old_run.parent / "eval"
    proc = subprocess.run(
        [
            sys.executable,
            "src/eval.py",
            f"ckpt_path={old_run / 'checkpoints' / 'last.ckpt'}",
            f"data.path={corpus}",
            f"hydra.run.dir={out}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    splits = json.loads((out / "eval.json").read_text())["splits"]
    assert splits["valid"]["loss"] == pytest.approx(EXPECTED["eval_valid_loss"], abs=1e-6)
    assert splits["test"]["loss"] == pytest.approx(EXPECTED["eval_test_loss"], abs=1e-6)


def test_old_checkpoint_scores_and_generates_as_before(old_run: Path) -> None:
    from rnnlm import LanguageModel

    lm = LanguageModel.load(old_run / "checkpoints" / "last.ckpt")
    assert lm.score("the cat sat on the mat").mean_loss == pytest.approx(
        EXPECTED["score_mean_loss"], abs=1e-6
    )
    gen = EXPECTED["generate"]
    text = lm.generate(gen["prompt"], max_new_tokens=gen["max_new_tokens"], seed=gen["seed"])
    assert text == gen["text"]


def test_old_run_resumes_as_before(old_run: Path) -> None:
    proc = run_train_script([f"resume={old_run}", "trainer.max_epochs=2"], timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((old_run / "result.json").read_text())
    assert result["status"] == "finished"
    assert result["epochs"] == 2
    assert result["best_val_ppl"] == pytest.approx(
        EXPECTED["resumed_max_epochs_2_best_val_ppl"], rel=1e-6
    )
