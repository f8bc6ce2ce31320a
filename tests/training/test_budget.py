"""`model_budget`: every model of the comparison presets is sized within 5% of the budget; a budget no
width can reach is one line; the README's comparison sweep runs and reports through the real scripts."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO_ROOT, composed, run_train_script
from rnnlm.errors import UserError
from rnnlm.training.budget import fit_budget

CHAR_MODELS = ["gru", "lstm", "mingru", "minlstm", "qrnn", "hawk", "mlstm", "transformer"]
WORD_MODELS = CHAR_MODELS[:-1]
# tiny Shakespeare's characters; wikitext-2-mini's words (wt2_budget's vocabulary)
PRESETS = [("cells_char", m, 65) for m in CHAR_MODELS] + [
    ("cells_word", m, 13_800) for m in WORD_MODELS
]


def _model(overrides: list[str], tmp_path: Path) -> tuple[dict, int]:
    with composed(overrides, tmp_path) as cfg:
        return OmegaConf.to_container(cfg.model, resolve=True), cfg.model_budget


@pytest.mark.parametrize(("experiment", "model", "vocab"), PRESETS)
def test_each_preset_model_is_sized_within_5_percent(
    experiment: str, model: str, vocab: int, tmp_path: Path
) -> None:
    config, budget = _model([f"experiment={experiment}", f"model={model}"], tmp_path)
    sized, count = fit_budget(config, vocab, budget)
    assert abs(count - budget) <= 0.05 * budget, (model, count)
    width = sized["embedding_dim"] if model == "transformer" else sized["hidden_dim"]
    assert width % 8 == 0  # at these sizes the preferred step lands within 5%
    if model != "transformer" and config.get("tie_weights") and not config.get("last_hidden_dim"):
        assert sized["embedding_dim"] == sized["hidden_dim"]  # the decoder still ties


def test_a_budget_no_width_reaches_is_one_line(tmp_path: Path) -> None:
    config, _ = _model(["model=lstm", "model.num_layers=2"], tmp_path)
    with pytest.raises(UserError, match="model_budget=100: the nearest width gives") as err:
        fit_budget(config, 10_000, 100)  # the embedding alone is larger
    assert "\n" not in str(err.value)


# slow (~28 s): the README's cells sweep and `make report RUN=latest` also run in the slow
# tests/project/test_readme_commands.py; the default suite checks every preset x model count in-process.
@pytest.mark.slow
def test_the_comparison_sweep_prints_matched_counts_and_reports(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """The README's `-m experiment=cells_char model=...` and `make report`, at tiny sizes."""
    sweep = tmp_path / "multirun"
    budget = 50_000
    out = run_train_script(
        [
            "-m",
            "experiment=cells_char",
            "model=gru,mingru,transformer",
            f"data.path={corpus_dir}",
            "debug=smoke",
            f"model_budget={budget}",
            "model.embedding_dim=16",
            "model.num_layers=1",
            "data.batch_size=4",
            "data.bptt=8",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    printed = [line for line in out.stdout.splitlines() if line.startswith("model: ")]
    assert [line.split()[1].rstrip(",") for line in printed] == ["gru", "mingru", "TransformerLM"]
    counts = [int(line.split(", ")[1].split()[0].replace(",", "")) for line in printed]
    assert all(abs(c - budget) <= 0.05 * budget for c in counts), counts

    report = subprocess.run(
        ["make", "report", f"RUN={sweep}"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    with (sweep / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["finished"] * 3
    assert sorted(int(r["num_parameters"]) for r in rows) == sorted(counts)
    assert (sweep / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_model_budget_is_checked_before_anything_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "src/train.py", "model_budget=-3", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "model_budget" in out.stderr, out.stderr[-2000:]
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
