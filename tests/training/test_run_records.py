"""A run's records are never lost or mixed: failed resumes, resume=latest, shared folders, stale token
caches, signals and exit codes, full disks (issue: run records). The kill, lock and disk-full cases run
src/train.py in real processes."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from conftest import (
    REPO_ROOT,
    TRAIN_SCRIPT,
    run_train_script,
    run_train_script_cases,
    start_train_script,
    tiny_overrides,
    write_corpus,
)
from rnnlm.errors import UserError
from rnnlm.inference.checkpoint import CheckpointError, load_checkpoint

# A tiny word-level run with a checkpoint that is a few hundred KB (for the file-size limit cases).
SMALL = ["model.embedding_dim=48", "model.hidden_dim=48", "callbacks.text_sample.max_new_tokens=3"]


def _files(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) and the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    """A finished tiny run (debug=smoke) to copy and resume."""
    run = tmp_path_factory.mktemp("finished") / "run"
    done = run_train_script([*tiny_overrides(corpus_dir), *SMALL, f"hydra.run.dir={run}"])
    assert done.returncode == 0, done.stderr[-2000:]
    return run


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


# -- 1, 4, 7: a resume that cannot work is refused before anything is written ------------------------
def test_refused_resumes_leave_every_file_of_the_run_as_it_was(
    finished_run: Path, tmp_path: Path
) -> None:
    names = ("wider", "cell", "cut", "noise", "named", "elsewhere")
    runs = {name: _copy(finished_run, tmp_path / name) for name in names}
    last = "checkpoints/last.ckpt"
    data = (runs["cut"] / last).read_bytes()
    (runs["cut"] / last).write_bytes(data[: len(data) // 2])  # truncated (a partial copy)
    (runs["noise"] / last).write_bytes(os.urandom(len(data)))  # random bytes
    before = {name: _files(run) for name, run in runs.items()}
    cases = {
        "wider": [f"resume={runs['wider']}", "model.hidden_dim=64"],
        "cell": [f"resume={runs['cell']}", "model=lstm", "trainer.max_epochs=3"],
        "cut": [f"resume={runs['cut']}"],
        "noise": [f"resume={runs['noise']}"],
        # hydra.run.dir given too: still checked before Hydra writes the run's .hydra/ files
        "named": [f"resume={runs['named']}", f"hydra.run.dir={runs['named']}", "model=lstm"],
        "elsewhere": [f"resume={runs['elsewhere']}", f"hydra.run.dir={tmp_path / 'other'}"],
    }
    out = run_train_script_cases(cases, tmp_path / "cases")
    expected = {
        "wider": "model.hidden_dim=64 would change what run",
        "cell": "model=lstm would change what run",
        "cut": "is not a PyTorch checkpoint or is truncated",
        "noise": "is not a PyTorch checkpoint or is truncated",
        "named": "model=lstm would change what run",
        "elsewhere": "runs in its own folder",
    }
    for name, result in out.items():
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert expected[name] in _one_error_line(result.stderr), name
        assert "weights_only=False" not in result.stderr  # torch's unsafe advice is never shown
        assert _files(runs[name]) == before[name], name  # not one byte of the run changed
    assert "trainer.max_epochs" in out["cell"].stderr  # says what a resume may change
    assert not (tmp_path / "other").exists()


def test_random_bytes_are_not_called_python_objects(tmp_path: Path) -> None:
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint or is truncated"):
        load_checkpoint(noise)


def test_a_checkpoint_of_another_model_or_text_does_not_fit() -> None:
    from rnnlm.inference.checkpoint import check_fits

    ckpt = {"state_dict": {"w": torch.zeros(3, 4)}, "rnnlm": {"tokenizer": {"a": 1}, "corpus": "x"}}
    check_fits(ckpt, {"w": torch.ones(3, 4)}, {"a": 1}, "x", "c.ckpt")
    with pytest.raises(
        CheckpointError, match=r"does not fit this run's model \(w is \(3, 4\) there"
    ):
        check_fits(ckpt, {"w": torch.ones(3, 5)}, {"a": 1}, "x", "c.ckpt")
    with pytest.raises(CheckpointError, match="same vocabulary, other content"):
        check_fits(ckpt, {"w": torch.ones(3, 4)}, {"a": 1}, "y", "c.ckpt")
    with pytest.raises(CheckpointError, match="another vocabulary"):
        check_fits(ckpt, {"w": torch.ones(3, 4)}, {"b": 1}, "x", "c.ckpt")


def test_resume_allows_only_what_does_not_change_the_run() -> None:
    from rnnlm.training.resume import check_resume_overrides

    allowed = [
        "trainer.max_epochs=10",
        "+trainer.max_steps=500",
        "trainer.max_time=00:00:10:00",
        "callbacks.model_checkpoint.every_n_train_steps=3",
        "logger=csv",
        "test=false",
        "hydra.run.dir=x",
        "hydra/launcher=local",
    ]
    check_resume_overrides(allowed, "run")
    for refused in ["model=lstm", "model.hidden_dim=64", "data.bptt=5", "optim.lr=1", "seed=3"]:
        with pytest.raises(UserError, match=f"{refused} would change what run"):
            check_resume_overrides([*allowed, refused], "run")
    for refused in ["experiment=wt2_budget", "+model.extra=1", "scheduler=none", "debug=smoke"]:
        with pytest.raises(UserError):
            check_resume_overrides([refused], "run")


# -- 2: resume=latest, and a run folder without last.ckpt ------------------------------------------
def _fake_run(root: Path, name: str, status: str | None, files: tuple[str, ...] = ()) -> Path:
    run = root / "train" / "runs" / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / ".hydra" / "overrides.yaml").write_text("- model=lstm\n")
    if status:
        error = "config: boom" if status == "failed" else None
        (run / "result.json").write_text(json.dumps({"status": status, "error": error}))
    for f in files:
        (run / f).parent.mkdir(parents=True, exist_ok=True)
        (run / f).write_bytes(b"x")
    return run


def test_resume_latest_refuses_an_older_run_when_the_latest_cannot_resume(tmp_path: Path) -> None:
    from rnnlm.training.resume import find_resume

    old = _fake_run(tmp_path, "2026-12-01_10-00-00_000000", "finished", ("checkpoints/last.ckpt",))
    assert find_resume("latest", tmp_path) == (old.resolve(), str(old / "checkpoints/last.ckpt"))
    new = _fake_run(
        tmp_path, "2026-12-01_11-00-00_000000", "interrupted", ("checkpoints/best.ckpt",)
    )
    with pytest.raises(UserError) as err:
        find_resume("latest", tmp_path)
    message = str(err.value)
    assert f"the latest run, {new}, cannot be resumed" in message
    assert f"pass resume={old}" in message and "best.ckpt but no last.ckpt" in message
    # The run itself is described as what it is, with the way on.
    with pytest.raises(UserError, match=f"pass resume={new}/checkpoints/best.ckpt"):
        find_resume(str(new), tmp_path)


@pytest.mark.parametrize(
    ("status", "described"),
    [
        ("failed", "it failed before it wrote a checkpoint: config: boom"),
        ("running", "it was stopped (killed) before it wrote a checkpoint"),
        ("interrupted", "it was interrupted before it wrote a checkpoint"),
        (None, "it stopped before training began"),
    ],
)
def test_a_run_folder_without_a_checkpoint_is_described(
    tmp_path: Path, status: str | None, described: str
) -> None:
    from rnnlm.training.resume import find_resume

    run = _fake_run(tmp_path, "2026-12-01_12-00-00_000000", status)
    with pytest.raises(UserError) as err:
        find_resume(str(run), tmp_path)
    assert described in str(err.value)
    assert "start it again (its command was `python src/train.py model=lstm`)" in str(err.value)
    with pytest.raises(UserError, match="found no run with checkpoints/last.ckpt"):
        find_resume("latest", tmp_path)
    with pytest.raises(UserError, match="is not a run folder of src/train.py"):
        find_resume(str(tmp_path), tmp_path)


def test_a_checkpoint_outside_a_run_folder_is_not_resumed(tmp_path: Path) -> None:
    from rnnlm.training.resume import find_resume

    loose = tmp_path / "loose.ckpt"
    loose.write_bytes(b"x")
    with pytest.raises(UserError, match=f"pass ckpt_path={loose} to start a new run from it"):
        find_resume(str(loose), tmp_path)


def test_what_a_resume_changed_stays_with_the_run(tmp_path: Path) -> None:
    """`resume=R trainer.max_epochs=50`, interrupted, then `resume=R` (the printed command) goes on with
    50 epochs; a resume asking for fewer epochs than the run has done is one line, not Lightning's."""
    from omegaconf import OmegaConf

    from rnnlm.training.resume import load_run_config, save_resume_changes
    from rnnlm.training.run import _check_epochs

    run = _fake_run(tmp_path, "2026-12-01_13-00-00_000000", "finished")
    (run / ".hydra" / "config.yaml").write_text("seed: 1\ntrainer:\n  max_epochs: 1\n")
    current = OmegaConf.create({"paths": {"output_dir": "x"}, "trainer": {"max_epochs": 50}})
    cfg, changes = load_run_config(run, current, [f"resume={run}", "trainer.max_epochs=50"])
    assert cfg.trainer.max_epochs == 50 and changes == {"trainer.max_epochs": 50}
    save_resume_changes(run, changes)  # when that attempt began
    plain = OmegaConf.create({"paths": {"output_dir": "x"}, "trainer": {"max_epochs": 1}})
    cfg, _ = load_run_config(run, plain, [f"resume={run}"])
    assert cfg.trainer.max_epochs == 50 and cfg.paths.output_dir == str(run)
    ckpt = {"loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 6}}}}}
    _check_epochs(ckpt, 6, run)
    with pytest.raises(UserError, match="has trained 6 epochs, more than trainer.max_epochs=5"):
        _check_epochs(ckpt, 5, run)


def test_a_run_folder_named_with_an_interpolation_is_claimed_as_hydra_will_name_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnlm.cli import _resolved_folder

    monkeypatch.setenv("RUNNAME", "r1")
    assert _resolved_folder(f"{tmp_path}/${{oc.env:RUNNAME}}") == tmp_path / "r1"
    assert _resolved_folder(f"{tmp_path}/x_${{now:%H-%M}}") is None  # only Hydra knows it: train()


# -- 3: one process per run folder ----------------------------------------------------------------
def test_a_second_process_is_refused_a_folder_in_use_and_a_finished_run_is_not_overwritten(
    corpus_dir: Path, tmp_path: Path
) -> None:
    from rnnlm.training import run_folder

    folder = tmp_path / "shared"
    first = start_train_script(
        [
            *tiny_overrides(corpus_dir),
            "seed=1",
            "trainer.limit_train_batches=200",
            "trainer.max_epochs=3",
            f"hydra.run.dir={folder}",
        ]  # fmt: skip
    )
    deadline = time.time() + 120
    while run_folder.owner(folder) is None and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second could start"
    second = run_train_script(
        [*tiny_overrides(corpus_dir), "seed=2", "model.hidden_dim=24", f"hydra.run.dir={folder}"]
    )
    line = _one_error_line(second.stderr)
    assert second.returncode == 2
    assert f"run folder {folder.resolve()} is in use by process {first.pid}" in line
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    saved = (folder / ".hydra" / "config.yaml").read_text()
    assert "seed: 1" in saved and "hidden_dim: 16" in saved  # the second process wrote nothing
    result = json.loads((folder / "result.json").read_text())
    assert [a["exit_code"] for a in result["attempts"]] == [0]
    # Later, a new run in that folder is refused too: it holds a finished run.
    again = run_train_script([*tiny_overrides(corpus_dir), f"hydra.run.dir={folder}"])
    assert again.returncode == 2
    assert "already holds a run (finished)" in _one_error_line(again.stderr)


def test_a_killed_owner_does_not_leave_its_folder_locked(tmp_path: Path) -> None:
    from rnnlm.training import run_folder

    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from rnnlm.training import run_folder; "
         f"run_folder.lock({str(folder)!r}); print('locked', flush=True); time.sleep(600)"],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match=f"is in use by process {holder.pid}"):
        run_folder.lock(folder)
    holder.kill()
    holder.wait()
    assert run_folder.owner(folder) is None
    run_folder.lock(folder)  # the kernel dropped the dead process's lock
    run_folder.unlock(folder)


# -- 5: the token cache is keyed by content --------------------------------------------------------
def test_token_cache_sees_an_edit_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    from rnnlm.data import LMDataModule

    corpus = write_corpus(tmp_path / "corpus")
    train = corpus / "train.txt"
    stat = train.stat()

    def load() -> tuple[set[str], str]:
        dm = LMDataModule(path=str(corpus), tokenizer="word", cache_dir=str(tmp_path / "cache"))
        tok = dm.load()
        return set(tok.stoi), str(dm.corpus_fingerprint)

    words, first = load()
    assert "cow" not in words
    train.write_text(train.read_text().replace("cat", "cow", 1))  # an edit in place, same size
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same time (touch -r, cp -p)
    assert (train.stat().st_size, train.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    words, second = load()
    assert second != first
    assert "cow" in words  # tokenised again: no stale ids from the cache


# -- 6: exit codes and signals -------------------------------------------------------------------
RESUME_ARGS = [
    "data=text_files",
    "data.tokenizer=word",
    "model=lstm",
    "model.hidden_dim=24",
    "model.embedding_dim=24",
    "model.dropout=0.3",
    "data.batch_size=8",
    "data.bptt=12",
    "trainer.max_epochs=2",
    "callbacks.text_sample.max_new_tokens=5",
    "test=false",
]


@pytest.fixture(scope="module")
def resume_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("signals"), {"train": 900, "valid": 60, "test": 60})


def _final_val_loss(run: Path) -> float:
    return float(load_checkpoint(run / "checkpoints" / "last.ckpt")["rnnlm"]["best_val_loss"])


@pytest.mark.parametrize(
    "signum",
    # SIGTERM takes the same path as SIGINT (StopSignals): slow, ~35 s
    [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_stops_at_a_step_with_last_ckpt_and_the_resume_is_exact(
    resume_corpus: Path, tmp_path: Path, signum: int
) -> None:
    args = [*RESUME_ARGS, f"data.path={resume_corpus}"]
    stopped = tmp_path / "stopped"
    proc = start_train_script([*args, f"hydra.run.dir={stopped}"])
    events = stopped / "tensorboard"
    deadline = time.time() + 120
    while not (stopped / "checkpoints" / "best.ckpt").exists() and time.time() < deadline:
        time.sleep(0.05)  # the first validation is done: the run is in its second epoch
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err
    assert f"resume it with:     python src/train.py resume={stopped}" in err
    result = json.loads((stopped / "result.json").read_text())
    name = signal.Signals(signum).name
    assert result["status"] == "interrupted" and result["error"] == f"interrupted by {name}"
    assert [(a["status"], a["exit_code"]) for a in result["attempts"]] == [
        ("interrupted", 128 + signum)
    ]
    ckpt = load_checkpoint(stopped / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] > 0 and events.is_dir()
    if signum != signal.SIGINT:
        return
    # The stop was at a step boundary with the state saved there: the resumed run is the straight run.
    straight = tmp_path / "straight"
    out = run_train_script_cases(
        {"straight": [*args, f"hydra.run.dir={straight}"], "resumed": [f"resume={stopped}"]},
        tmp_path / "cases",
    )
    for case in out.values():
        assert case.returncode == 0, case.stderr[-2000:]
    assert "resuming run:       " + str(stopped) in out["resumed"].stdout
    assert (
        "not resumable" not in out["resumed"].stderr
    )  # Lightning's mid-epoch warning is not shown
    assert _final_val_loss(stopped) == pytest.approx(_final_val_loss(straight), abs=1e-6)
    result = json.loads((stopped / "result.json").read_text())
    assert [(a["status"], a["exit_code"]) for a in result["attempts"]] == [
        ("interrupted", 130),
        ("finished", 0),
    ]
    assert result["status"] == "finished" and result["error"] is None


class SignalDuringValidation(L.Callback):
    """Sends this process SIGTERM in the middle of the first validation, as a scheduler's preemption
    might."""

    def __init__(self) -> None:
        self.sent_at: int | None = None

    def on_validation_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if self.sent_at is None and not trainer.sanity_checking:
            self.sent_at = trainer.global_step
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_validation_stops_after_the_next_step_with_last_ckpt(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning's own SIGTERM handler stops mid-validation without a checkpoint; rnnlm's finishes
    the validation and the next training step, saves last.ckpt there, and exits 143."""
    import rnnlm.training.run as run_module
    from conftest import train_in_process

    sender = SignalDuringValidation()
    real = run_module.instantiate_group
    monkeypatch.setattr(run_module, "instantiate_group", lambda g: [*real(g), sender])
    run = tmp_path / "run"
    overrides = [
        *tiny_overrides(corpus_dir),
        "trainer.max_epochs=3",
        "trainer.val_check_interval=3",
    ]
    with pytest.raises(SystemExit) as stopped:
        train_in_process(overrides, run)
    assert stopped.value.code == 143
    assert sender.sent_at == 3
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 4
    result = json.loads((run / "result.json").read_text())
    assert (result["status"], result["attempts"][-1]["exit_code"]) == ("interrupted", 143)


def _limit_file_size(limit: int):  # noqa: ANN202
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_runs_record(
    finished_run: Path, tmp_path: Path
) -> None:
    run = _copy(finished_run, tmp_path / "run")
    before = json.loads((run / "result.json").read_text())
    last = run / "checkpoints" / "last.ckpt"
    last_bytes = last.read_bytes()
    limit = len(last_bytes) // 2  # the next checkpoint cannot be written; logs and events can
    proc = subprocess.run(
        [sys.executable, TRAIN_SCRIPT, f"resume={run}", "trainer.max_epochs=3"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        preexec_fn=_limit_file_size(limit),  # noqa: PLW1509 (ulimit -f for this process only)
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert "Traceback" not in proc.stderr and len(line) == 1, proc.stderr[-3000:]
    assert "could not write checkpoint" in line[0] and "file-size limit" in line[0]
    assert f"resume={run}" in line[0]
    assert last.read_bytes() == last_bytes  # the previous last.ckpt is intact
    after = json.loads((run / "result.json").read_text())
    for key in ("best_val_ppl", "test_ppl", "num_parameters", "tokens_seen"):
        assert after[key] == before[key], key  # the finished attempt's figures are kept
    assert [(a["status"], a["exit_code"]) for a in after["attempts"]] == [
        ("finished", 0),
        ("failed", 1),
    ]
    assert after["status"] == "failed" and "could not write checkpoint" in after["error"]


# -- 8, 9: fast refusals, sweep summaries, rough edges ---------------------------------------------
@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("train.py", ["model.hiden_dim=64"], "did you mean model.hidden_dim?"),
        ("train.py", ["optim.lr=-1"], "optim.lr=-1 must be > 0"),
        ("train.py", ["resume=/nonexistent"], "resume=/nonexistent does not exist"),
        # a callback class that inherits its arguments (RunCheckpoint from ModelCheckpoint)
        ("train.py", ["+callbacks.model_checkpoint.foo=1"], "valid keys: auto_insert_metric_name"),
        ("eval.py", ["ckpt_path=x", "eval.batch_sz=3"], "did you mean eval.batch_size?"),
        ("generate.py", ["ckpt_path=x", "temprature=1"], "did you mean temperature?"),
        ("search.py", ["ckpt_path=x", "corpus=y", "query=z", "topk=3"], "did you mean top_k?"),
        ("rank.py", ["ckpt_path=x", "context=a", "candidates=[b]", "sortby=x"], "sort_by"),
        ("export.py", ["hub", "ckpt_path=x", "out=y", "opset=3"], "opset=3 must be an ONNX opset"),
        ("serve.py", ["ckpt_path=x", "workers=0"], "workers=0 must be an integer >= 1"),
    ],
)
def test_a_refused_command_never_imports_torch(script: str, args: list[str], message: str) -> None:
    """Every entry point checks its command on Hydra and OmegaConf alone, so a refusal answers at once
    (`make bench` measures how fast); `-X importtime` lists every module the process imported."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", f"src/{script}", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "lightning"}, f"{script} imported torch or Lightning"
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]


def test_a_sweep_with_failed_jobs_ends_with_one_summary(corpus_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = run_train_script(
        ["-m", *tiny_overrides(corpus_dir), "optim.lr=-1,0.002", f"hydra.sweep.dir={sweep}"]
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    line = [x for x in out.stderr.splitlines() if x.startswith("error: ")]
    assert line == [
        f"error: 1 of 2 jobs did not finish: job 0 (optim.lr=-1): config: optim.lr=-1 must be > 0 "
        f"(each job's result.json and log are in {sweep}; `make report RUN={sweep}` compares them)"
    ]
    statuses = [json.loads((sweep / j / "result.json").read_text())["status"] for j in "01"]
    assert statuses == ["failed", "finished"]  # the job after it ran
    again = run_train_script(["-m", *tiny_overrides(corpus_dir), f"hydra.sweep.dir={sweep}"])
    assert again.returncode == 2
    assert "already holds the jobs of a sweep (0, 1)" in _one_error_line(again.stderr)


def test_generate_refuses_zero_samples_and_recurrent_is_not_a_model(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "src/generate.py", f"ckpt_path={tmp_path / 'x.ckpt'}", "num_samples=0"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "num_samples=0 must be an integer >= 1" in _one_error_line(out.stderr)
    out = run_train_script(["model=recurrent"])
    assert out.returncode == 2
    line = _one_error_line(out.stderr)
    assert "Could not find 'model/recurrent'" in line and "recurrent," not in line


def test_last_ckpt_is_the_latest_state_after_a_validation_that_did_not_improve(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """Lightning 2.6 writes last.ckpt only with a new best; `mode=max` makes every later validation
    'worse', so there last.ckpt stayed at the first validation and a resume went back to it."""
    run = tmp_path / "run"
    out = run_train_script(
        [
            *tiny_overrides(corpus_dir),
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=4",
            "callbacks.model_checkpoint.mode=max",
            "test=false",
            f"hydra.run.dir={run}",
        ]  # fmt: skip
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert load_checkpoint(run / "checkpoints" / "best.ckpt")["global_step"] == 4
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 12


def test_a_run_raises_no_warnings(corpus_dir: Path, tmp_path: Path) -> None:
    import warnings

    from conftest import train_in_process

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_in_process(tiny_overrides(corpus_dir), tmp_path / "run")
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "requires_grad" in m or "LeafSpec" in m], messages
