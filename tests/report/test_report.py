"""Sweep reports (src/report.py): a real 2x2 multirun with failed jobs, jobs that never ran, bad input.

The multirun is `model=rnn,gru x model.hidden_dim=16,17` with tied embeddings of size 16: the two jobs
with hidden_dim=17 fail (tie_weights needs equal sizes), the two with 16 finish. A job that fails its
config check fails before it writes result.json; the report reads the failure from the job's log.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_train_script
from rnnlm.report import build_report, plot, val_curve

REPORT_SCRIPT = "src/report.py"


def run_report(folder: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, REPORT_SCRIPT, str(folder)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sweep_overrides(corpus: Path, sweep_dir: Path) -> list[str]:
    return [
        "-m",
        "data=text_files",
        f"data.path={corpus}",
        "debug=smoke",
        "data.batch_size=4",
        "data.bptt=8",
        "model=rnn,gru",
        "model.embedding_dim=16",
        "model.hidden_dim=16,17",
        "model.tie_weights=true",
        f"hydra.sweep.dir={sweep_dir}",
    ]


@pytest.fixture(scope="module")
def sweep_2x2(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    sweep = tmp_path_factory.mktemp("report") / "multirun"
    proc = run_train_script(sweep_overrides(corpus_dir, sweep))
    # A failed job fails the multirun (exit 1), after every job of the batch has run.
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    return sweep


def _result(job: Path) -> dict:
    return json.loads((job / "result.json").read_text())


def _hidden_dim(job: Path) -> int:
    overrides = (job / ".hydra" / "overrides.yaml").read_text()
    return 17 if "model.hidden_dim=17" in overrides else 16


def _md_rows(md: str) -> list[list[str]]:
    """The data rows of the Markdown table, as cells."""
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| job | overrides | status |"), lines[0]
    assert set(lines[1]) <= set("|-: "), lines[1]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]


def test_report_of_a_2x2_multirun_with_failed_jobs(sweep_2x2: Path) -> None:
    proc = run_report(sweep_2x2)
    assert proc.returncode == 0, proc.stderr
    for name in ("report.md", "report.csv", "report.png"):
        assert (sweep_2x2 / name).is_file(), name
    assert (sweep_2x2 / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Markdown: one row per job; the overrides column shows what differs between jobs.
    md = (sweep_2x2 / "report.md").read_text()
    rows = _md_rows(md)
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]
    for job, overrides, status, params, val_ppl, test_ppl, tok_s, wall in rows:
        assert "model.hidden_dim=" in overrides and "model=" in overrides
        assert "data.path" not in overrides  # shared by every job: listed once above the table
        if "model.hidden_dim=17" in overrides:
            assert status == "failed", (job, status)
            assert params == val_ppl == test_ppl == tok_s == "—"
        else:
            assert status == "finished", (job, status)
            assert int(params.replace(",", "")) > 0
            assert math.isfinite(float(val_ppl.strip("*"))) and float(test_ppl) > 1
            assert float(tok_s.replace(",", "")) > 0 and wall.endswith("s")
    assert "Every job:" in md and "`model.tie_weights=true`" in md.lower()
    assert "2 finished, 2 failed" in md or "2 failed, 2 finished" in md
    # The failure says why.
    failures = [line for line in md.splitlines() if line.startswith("- job ")]
    assert len(failures) == 2 and all("(failed): " in f and "tie_weights" in f for f in failures)
    assert "Error in call to target" not in md
    assert "![validation perplexity against training tokens and training time](report.png)" in md

    # It prints the table.
    assert "| job | overrides | status |" in proc.stdout
    assert sum(line.startswith("| ") for line in proc.stdout.splitlines()) == 6

    # CSV: the same rows with the raw figures of result.json.
    with (sweep_2x2 / "report.csv").open(newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 4
    for rec in records:
        job = sweep_2x2 / rec["job"]
        assert rec["status"] == ("failed" if _hidden_dim(job) == 17 else "finished")
        if rec["status"] == "finished":
            result = _result(job)
            assert float(rec["best_val_ppl"]) == pytest.approx(result["best_val_ppl"])
            assert float(rec["test_ppl"]) == pytest.approx(result["test_ppl"])
            assert int(rec["num_parameters"]) == result["num_parameters"]
            assert float(rec["tokens_per_sec"]) == pytest.approx(result["tokens_per_sec"])
            assert float(rec["wall_time_s"]) == pytest.approx(result["wall_time_s"])
            assert rec["error"] == ""
        else:
            assert rec["best_val_ppl"] == "" and "tie_weights" in rec["error"]
        assert f"model.hidden_dim={_hidden_dim(job)}" in rec["overrides"]
        assert "data.path=" in rec["all_overrides"]


def test_plot_reads_val_ppl_against_tokens_and_time_from_tensorboard(sweep_2x2: Path) -> None:
    for job in sorted(p for p in sweep_2x2.iterdir() if p.is_dir()):
        curve = val_curve(job)
        if _hidden_dim(job) == 17:
            assert curve == []  # failed before training: no TensorBoard scalars
            continue
        result = _result(job)
        # debug=smoke validates once: one point at (tokens seen, best validation perplexity).
        assert len(curve) == 1, curve
        (point,) = curve
        assert point.tokens == result["tokens_seen"] > 0
        assert point.ppl == pytest.approx(result["best_val_ppl"], rel=1e-5)
        assert 0 < point.seconds <= result["wall_time_s"]  # time spent fitting when it validated
    assert plot(build_report(sweep_2x2), sweep_2x2 / "check.png") == 2  # a line per finished job


def test_report_shows_jobs_that_never_ran(sweep_2x2: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_2x2, sweep)
    for name in ("report.md", "report.csv", "report.png"):
        (sweep / name).unlink(missing_ok=True)
    finished = [j for j in sorted(sweep.iterdir()) if j.is_dir() and _hidden_dim(j) == 16]
    failed = [j for j in sorted(sweep.iterdir()) if j.is_dir() and _hidden_dim(j) == 17]
    # Still running (or killed without a chance to record it).
    running = finished[1]
    data = _result(running)
    data.update(status="running", best_val_ppl=None, test_ppl=None)
    (running / "result.json").write_text(json.dumps(data))
    # Failed while training: result.json says so.
    (failed[0] / "result.json").write_text(
        json.dumps({"status": "failed", "error": "CUDA out of memory", "num_parameters": 999})
    )
    # Failed before result.json was written: only its log says so.
    (failed[1] / "result.json").unlink(missing_ok=True)
    # Hydra made the folder and .hydra/, then nothing ran.
    shutil.copytree(failed[1] / ".hydra", sweep / "4" / ".hydra")
    (sweep / "4" / "train.log").write_text("")
    # A job folder with nothing in it, and submitit's folder (not a job).
    (sweep / "5").mkdir()
    (sweep / ".submitit" / "123").mkdir(parents=True)

    proc = run_report(sweep)
    assert proc.returncode == 0, proc.stderr
    rows = {r[0]: r for r in _md_rows((sweep / "report.md").read_text())}
    assert set(rows) == {"0", "1", "2", "3", "4", "5"}
    assert rows[finished[0].name][2] == "finished"
    assert rows[running.name][2] == "running"
    assert rows[failed[0].name][2] == "failed" and rows[failed[0].name][3] == "999"
    assert rows[failed[1].name][2] == "failed"
    assert rows["4"][2] == "not started" and "model.hidden_dim=17" in rows["4"][1]
    assert rows["5"][2] == "not started" and rows["5"][1] == "?"
    with (sweep / "report.csv").open(newline="") as f:
        records = {r["job"]: r for r in csv.DictReader(f)}
    assert records[failed[0].name]["error"] == "CUDA out of memory"
    assert "tie_weights" in records[failed[1].name]["error"]
    assert "never started" in records["4"]["error"]
    assert "never started" in records["5"]["error"]
    assert (sweep / "report.png").is_file()
    assert "6 jobs: 1 finished, 1 running, 2 failed, 2 not started" in proc.stdout


def test_report_refuses_a_missing_folder_or_one_without_jobs(tmp_path: Path) -> None:
    missing = run_report(tmp_path / "nope")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: ")
    assert "does not exist" in missing.stderr and missing.stdout == ""

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_report(empty)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no jobs in" in proc.stderr
    assert not (empty / "report.md").exists()

    single = tmp_path / "single_run"
    (single / ".hydra").mkdir(parents=True)
    (single / "checkpoints").mkdir()
    (single / "result.json").write_text('{"status": "finished"}')
    proc = run_report(single)
    assert proc.returncode == 2 and "single run" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_latest_is_the_newest_multirun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnlm.errors import UserError
    from rnnlm.report import resolve_folder

    monkeypatch.setenv("RNNLM_OUTPUT_DIR", str(tmp_path))
    with pytest.raises(UserError, match="no multirun under"):
        resolve_folder("latest")
    root = tmp_path / "train" / "multiruns"
    for stamp in ("2026-01-02_10-00-00", "2026-01-10_09-00-00", "2026-01-03_23-59-59"):
        (root / stamp / "0").mkdir(parents=True)
    assert resolve_folder("latest") == root / "2026-01-10_09-00-00"


def test_installed_command_answers_like_the_script(tmp_path: Path) -> None:
    """`rnnlm-report` (installed with the package) is the same command as `python src/report.py`."""
    command = Path(sys.executable).parent / "rnnlm-report"
    env = {**os.environ, "RNNLM_OUTPUT_DIR": str(tmp_path)}
    proc = subprocess.run(
        [str(command), "latest"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: no multirun under {tmp_path}/train/multiruns: run one first (`python src/train.py -m ...`)"
    )


def test_a_translation_sweep_shows_bleu_and_chrf(tmp_path: Path) -> None:
    """Jobs whose result.json has BLEU (translation runs) get BLEU and chrF columns and a best-BLEU line."""
    from rnnlm.report.jobs import build_report
    from rnnlm.report.render import markdown, summary_lines

    for n, (bleu, attention) in enumerate(((31.5, "bahdanau"), (29.25, "luong"))):
        job = tmp_path / str(n)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(
            f"- experiment=translate_attn\n- model.attention={attention}\n"
        )
        result = {
            "status": "finished",
            "best_val_ppl": 6.0 + n,
            "test_ppl": 6.5,
            "best_val_bleu": bleu,
            "test_bleu": bleu + 1,
            "test_chrf": 55.0,
        }
        (job / "result.json").write_text(json.dumps(result))
    report = build_report(tmp_path)
    md = markdown(report, with_plot=False)
    assert "best val BLEU | test BLEU | test chrF" in md
    assert "| 31.50 | 32.50 | 55.00 |" in md
    assert any("best validation BLEU: 31.50, job 0" in line for line in summary_lines(report))
