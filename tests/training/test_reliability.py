"""Crashes, exact resume, non-finite losses, bad data and unsafe checkpoints (issue: reliability)."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import CONF_DIR, REPO_ROOT, run_train_script, start_train_script, write_corpus
from rnnlm.inference.checkpoint import CheckpointError, load_checkpoint

# Small, but with dropout (so the RNG matters) and enough windows per epoch to be killed mid-epoch.
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
    "trainer.val_check_interval=1.0",
    "callbacks.model_checkpoint.every_n_train_steps=3",
    "callbacks.text_sample.max_new_tokens=5",
    "test=false",
]


TRANSLATION_ARGS = [
    "model.hidden_dim=16",
    "model.embedding_dim=16",
    "model.dropout=0.3",
    "data.batch_size=8",
    "trainer.max_epochs=2",
    "trainer.max_time=null",
    "trainer.val_check_interval=1.0",
    "callbacks.time_budget.enabled=false",
    "callbacks.model_checkpoint.every_n_train_steps=3",
    "callbacks.model_checkpoint.monitor=val/loss",
    "callbacks.model_checkpoint.mode=min",
    "decode.val_sentences=4",
    "test=false",
]


def _pairs(folder: Path) -> Path:
    """The first pairs of the shared Tatoeba copy: 160 training pairs, 20 batches of 8 an epoch."""
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "tatoeba-eng-fra"
    folder.mkdir(parents=True)
    for split, n in (("train", 160), ("valid", 24), ("test", 8)):
        with (shared / f"{split}.tsv").open(encoding="utf-8") as f:
            (folder / f"{split}.tsv").write_text("".join(next(f) for _ in range(n)), "utf-8")
    return folder


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    (tb,) = (run / "tensorboard").iterdir()
    ea = EventAccumulator(str(tb))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


@pytest.fixture(scope="module")
def resume_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("resume"), {"train": 900, "valid": 60, "test": 60})


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="fixed_windows"),
        # Each epoch draws its own window lengths: the resumed epoch must continue in its own windows.
        # (slow: ~35 s; the default suite checks the same ordering with
        # test_resumed_epoch_starts_at_the_window_reached_in_the_loader_iterated)
        pytest.param(["data.variable_bptt=true"], id="variable_bptt", marks=pytest.mark.slow),
        # Two gloo ranks, each with its own shard, carried state and dropout masks (slow: ~60 s).
        pytest.param(["trainer=ddp_cpu"], id="ddp", marks=pytest.mark.slow),
        # A cell that trains in parallel over time: its matrix memory (C, n, m) and its convolution's
        # last inputs are carried across windows and through the checkpoint.
        pytest.param(["model=mlstm", "model.heads=2", "model.chunk_size=8"], id="mlstm"),
        # Translation: the pairs' batch order of the resumed epoch continues where it was.
        pytest.param(["experiment=translate_attn"], id="translation"),
    ],
)
def test_sigkill_mid_epoch_then_resume_matches_straight_run(
    resume_corpus: Path, tmp_path: Path, extra: list[str]
) -> None:
    args = [*RESUME_ARGS, *extra, f"data.path={resume_corpus}"]
    if extra == ["experiment=translate_attn"]:
        args = [*extra, *TRANSLATION_ARGS, f"data.path={_pairs(tmp_path / 'pairs')}"]
    straight = tmp_path / "straight"
    done = run_train_script([*args, f"hydra.run.dir={straight}"], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    killed = tmp_path / "killed"
    ddp = "trainer=ddp_cpu" in extra
    proc = start_train_script([*args, f"hydra.run.dir={killed}"], new_session=ddp)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 180
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                ckpt = torch.load(last, weights_only=True)
            except Exception:  # pragma: no cover - only if atomic writes were broken
                pytest.fail(
                    "last.ckpt was readable only partially: checkpoint writes are not atomic"
                )
            step = ckpt["global_step"]
            # Epoch 2 has started and is not over: a true mid-epoch kill.
            if ckpt["epoch"] == 1 and ckpt["rnnlm"]["windows_done"] > 0:
                if ddp:
                    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its rank-1 process
                else:
                    os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended before it could be killed (step {step})"
    )
    assert (
        not list((killed / "checkpoints").glob("*.tmp*")) or True
    )  # a stray temp file is harmless
    assert load_checkpoint(last)["rnnlm"]["windows_done"] > 0

    if ddp:  # every rank's carried state and RNG, so that each resumes exactly where it was
        assert len(load_checkpoint(last)["rnnlm"]["ranks"]) == 2
    resumed = run_train_script([f"resume={killed}"], timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    want = _scalars(straight, "val/loss")
    got = _scalars(killed, "val/loss")
    assert [s for s, _ in want] == sorted({s for s, _ in got})
    final_want, final_got = want[-1][1], got[-1][1]
    assert abs(final_want - final_got) <= 1e-6, (final_want, final_got)
    # One continuous TensorBoard run: a single run folder whose steps reach the end of training.
    assert len(list((killed / "tensorboard").iterdir())) == 1
    assert max(s for s, _ in _scalars(killed, "train/loss")) == max(
        s for s, _ in _scalars(straight, "train/loss")
    )


@pytest.mark.parametrize(("fn", "kept"), [("test", True), ("fit", False)])
def test_testing_a_checkpoint_keeps_the_runs_counters(fn: str, kept: bool) -> None:
    """`trainer.test(ckpt_path=best)` at the end of a run loads the best checkpoint: the run's own
    token count (result.json's `tokens_seen`) must not go back to that checkpoint's; a resumed fit
    does take the checkpoint's count and stream position."""
    from types import SimpleNamespace

    from rnnlm.training.module import LMModule

    model = {"_target_": "rnnlm.models.RNNLM", "cell": "gru", "embedding_dim": 4, "hidden_dim": 4}
    module = LMModule(model=model, optim={"_target_": "torch.optim.SGD", "lr": 0.1}, vocab_size=6)
    module._trainer = SimpleNamespace(state=SimpleNamespace(fn=fn), datamodule=None)
    module.tokens_seen = 5000
    meta = {"tokens_seen": 1200, "windows_done": 3, "train_hidden": None, "rng": None}
    module.on_load_checkpoint({"rnnlm": meta, "state_dict": {}})
    assert module.tokens_seen == (5000 if kept else 1200)
    assert (module.streams.resume_state is None) == kept


# slow (~26 s): the default suite keeps tests/e2e/test_train_e2e.py::test_same_seed_gives_identical_val_loss
@pytest.mark.slow
def test_same_seed_same_loss_curve(corpus_dir: Path, tmp_path: Path) -> None:
    args = [
        "data=text_files",
        f"data.path={corpus_dir}",
        "debug=smoke",
        "model.hidden_dim=16",
        "model.embedding_dim=16",
        "model.dropout=0.2",
        "data.batch_size=4",
        "data.bptt=8",
        "seed=7",
    ]
    curves = []
    for name in ("a", "b"):
        out = run_train_script([*args, f"hydra.run.dir={tmp_path / name}"])
        assert out.returncode == 0, out.stderr[-2000:]
        curves.append(_scalars(tmp_path / name, "train/loss"))
    assert curves[0] == curves[1] and len(curves[0]) >= 5


def test_nonfinite_loss_stops_without_writing_bad_checkpoints(
    corpus_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "nan"
    out = run_train_script(
        [
            "data=text_files",
            f"data.path={corpus_dir}",
            "model=rnn_relu",
            "model.hidden_dim=16",
            "model.embedding_dim=16",
            "data.batch_size=4",
            "data.bptt=8",
            "optim=sgd",
            "optim.lr=1e10",  # blows up within a couple of steps
            "trainer.gradient_clip_val=null",
            "trainer.max_epochs=1",
            f"hydra.run.dir={run}",
        ]
    )
    assert out.returncode != 0
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("error: non-finite") and "at step" in err and "checkpoint" in err
    assert "Traceback" not in out.stderr
    for ckpt in (run / "checkpoints").glob("*.ckpt") if (run / "checkpoints").exists() else []:
        state = load_checkpoint(ckpt)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


class _Evil:
    def __reduce__(self):  # would run `os.system` when unpickled
        return (os.system, ("echo pwned > /tmp/rnnlm-pwned",))


def test_crafted_checkpoint_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "evil.ckpt"
    torch.save({"rnnlm": {}, "state_dict": {}, "payload": _Evil()}, bad, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="refuses|could run code"):
        load_checkpoint(bad)
    assert not Path("/tmp/rnnlm-pwned").exists()


# hydra's own blocklist stops `exec`, `os.system` and the like, but not every callable: `open(path, "w")`
# creates or truncates any file the user can write.
_OPEN = {"_target_": "builtins.open", "_args_": ["PWNED", "w"]}


@pytest.mark.parametrize(
    ("model_cfg", "expected"),
    [
        (_OPEN, "'builtins.open', not one of"),
        ({"_target_": "rnnlm.models.RNNLM", "cell": _OPEN}, "a _target_ at model.cell"),
    ],
)
def test_checkpoint_config_naming_other_code_is_refused(
    tmp_path: Path, model_cfg: dict, expected: str
) -> None:
    """A checkpoint's config is data: loading one builds rnnlm's own classes only, never a callable
    that a crafted file names (hydra's instantiate would call it, nested targets first)."""
    from rnnlm import LanguageModel

    pwned = tmp_path / "pwned"
    cfg = json.loads(json.dumps(model_cfg).replace("PWNED", str(pwned)))
    ckpt = tmp_path / "crafted.ckpt"
    torch.save(
        {
            "rnnlm": {"tokenizer": None},
            "state_dict": {},
            "hyper_parameters": {"model": cfg, "vocab_size": 10},
        },
        ckpt,
    )
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        LanguageModel.load(ckpt)
    assert not pwned.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"   \n\t\n", "empty"),
        (b"caf\xc3 au lait\n" * 3, "not valid UTF-8 (byte offset 3)"),
        (b"\x00\x01\x02binary\x00", "binary"),
    ],
)
def test_bad_corpus_files_get_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    corpus = write_corpus(tmp_path / "c")
    (corpus / "valid.txt").write_bytes(content)
    out = run_train_script(
        ["data=text_files", f"data.path={corpus}", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and expected in lines[-1], out.stderr[-1500:]
    assert "Traceback" not in out.stderr


def test_encoding_errors_replace_lets_the_run_go_on(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c")
    with open(corpus / "train.txt", "ab") as f:
        f.write(b"bad \xff byte here\n")
    out = run_train_script(
        [
            "data=text_files",
            f"data.path={corpus}",
            "data.encoding_errors=replace",
            "debug=smoke",
            "model.hidden_dim=8",
            "model.embedding_dim=8",
            "data.batch_size=2",
            "data.bptt=4",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
    )
    assert out.returncode == 0, out.stderr[-1500:]


def test_atomic_checkpoint_io_never_truncates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnlm.training.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(3)}, target)

    def dying_save(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt  # the process is interrupted half-way through the write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"a": torch.zeros(3)}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_runs_started_in_the_same_second_get_folders_of_their_own() -> None:
    # Two jobs launched together (`for s in 1 2; do python src/train.py seed=$s & done`) compose their
    # config within microseconds of each other; with a per-second timestamp they shared one folder and
    # wrote over each other's config and checkpoints.
    from hydra import compose, initialize_config_dir

    def folders() -> tuple[str, str]:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            hydra = compose("train", return_hydra_config=True).hydra
            return str(hydra.run.dir), str(hydra.sweep.dir)

    first, second = folders(), folders()
    for a, b in zip(first, second, strict=True):
        assert a != b
        assert sorted([b, a]) == [a, b]  # names sort in start order: resume=latest, RUN=latest
        assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}", Path(a).name), a


def test_no_shell_true_or_eval_in_source() -> None:
    for path in (REPO_ROOT / "src").rglob("*.py"):
        text = path.read_text()
        assert "shell=True" not in text, path
        for bad in ("eval(", "exec("):
            for line in text.splitlines():
                stripped = line.strip()
                if bad in stripped and not stripped.startswith("#"):
                    # only method calls like `model.eval()` are allowed
                    assert f".{bad}" in stripped or f"_{bad}" in stripped, (path, line)


def test_pickle_is_not_used_to_load(tmp_path: Path) -> None:
    assert "pickle.load" not in "".join(p.read_text() for p in (REPO_ROOT / "src").rglob("*.py"))
    assert pickle  # imported for the crafted checkpoint's protocol only


def test_subprocess_ddp_inside_multirun_is_refused(corpus_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = run_train_script(
        [
            "-m",
            "trainer=ddp_cpu",
            "data=text_files",
            f"data.path={corpus_dir}",
            "debug=smoke",
            "model=rnn,gru",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert out.returncode != 0
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]  # one sweep, not one per rank
    for job in jobs:
        result = json.loads((job / "result.json").read_text())
        assert result["status"] == "failed"
        assert "would make every rank re-run the whole sweep" in result["error"]
        assert "hydra/launcher=slurm" in result["error"]
        assert not (job / "checkpoints").exists()


@pytest.mark.parametrize(
    ("trainer", "refused"),
    [
        ({"accelerator": "cpu", "devices": 2}, True),  # Lightning chooses subprocess DDP itself
        ({"accelerator": "cpu", "devices": 1, "num_nodes": 2}, True),
        ({"accelerator": "cpu", "devices": 1, "strategy": "fsdp"}, True),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}, False),
        ({"accelerator": "cpu", "devices": 1}, False),
    ],
)
def test_multirun_refuses_every_kind_of_subprocess_ranks(
    trainer: dict, refused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only trainer.strategy=ddp: Lightning's `auto` strategy starts DDP subprocesses for more than
    one device or node, and they would re-run the whole sweep as well."""
    from omegaconf import OmegaConf

    from rnnlm.errors import UserError
    from rnnlm.training import launch

    monkeypatch.setattr(launch, "in_multirun", lambda: True)
    cfg = OmegaConf.create({"trainer": trainer})
    if refused:
        with pytest.raises(UserError, match="would make every rank re-run the whole sweep"):
            launch.check_launch(cfg)
    else:
        launch.check_launch(cfg)


@pytest.mark.slow
def test_sweep_of_20_jobs_completes_without_leaks(corpus_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep20"
    before = _children()
    out = run_train_script(
        [
            "-m",
            "data=text_files",
            f"data.path={corpus_dir}",
            "debug=smoke",
            "model.hidden_dim=8",
            "model.embedding_dim=8",
            "data.batch_size=2",
            "data.bptt=4",
            "seed=range(20)",
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = [json.loads((sweep / str(i) / "result.json").read_text()) for i in range(20)]
    assert [r["status"] for r in results] == ["finished"] * 20
    assert all(r["best_val_ppl"] for r in results)
    assert _children() == before  # no stray processes left behind


def test_sweep_leaves_no_open_files_in_process(corpus_dir: Path, tmp_path: Path) -> None:
    """Several jobs in one process (as Hydra's basic launcher runs them) must not leak descriptors."""
    from conftest import composed
    from rnnlm.training.run import train

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    counts = []
    for i in range(4):
        overrides = [
            "data=text_files",
            f"data.path={corpus_dir}",
            "debug=smoke",
            "model.hidden_dim=8",
            "model.embedding_dim=8",
            "data.batch_size=2",
            "data.bptt=4",
            f"seed={i}",
        ]
        with composed(overrides, tmp_path / f"job{i}") as cfg:
            train(cfg)
        counts.append(open_fds())
    assert len(set(counts)) == 1, counts  # no descriptor left open by any job


def _children() -> set[int]:
    me = os.getpid()
    kids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                kids.add(int(entry.name))
    return kids
