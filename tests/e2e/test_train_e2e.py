"""End to end: training runs (in-process and through `src/train.py`), multiruns, checkpoints, DDP on
CPU, every config file, user errors, reproducibility.

Subprocesses cost ~7 s each just to import Lightning on this machine, so most runs are in-process
(`rnnlm.training.run.train` on a config composed like `@hydra.main` does) and the subprocess tests
are few: one multirun, one DDP run and the error cases (run two at a time).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import (
    CONF_DIR,
    composed,
    run_train_script,
    run_train_script_cases,
    tiny_overrides,
    train_in_process,
    write_corpus,
)

MODELS = ["rnn", "rnn_relu", "lstm", "gru"]
OPTIMS = ["sgd", "adam", "adamw", "asgd"]
GATES = {"rnn": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
OPTIM_CLASS = {
    "sgd": "torch.optim.SGD",
    "adam": "torch.optim.Adam",
    "adamw": "torch.optim.AdamW",
    "asgd": "torch.optim.ASGD",
}


def _load(path: Path) -> dict:
    assert path.is_file(), f"{path} was not written"
    return torch.load(path, map_location="cpu", weights_only=True)


def _stderr_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# ==================================================================================================
# Every model x optimiser pair (in-process)
# ==================================================================================================
@pytest.mark.parametrize("optim", OPTIMS)
@pytest.mark.parametrize("model", MODELS)
def test_train_every_model_and_optimizer(
    model: str, optim: str, corpus_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    ppl = train_in_process(
        [
            *tiny_overrides(corpus_dir),
            f"model={model}",
            f"optim={optim}",
            "trainer.limit_train_batches=3",
            "test=false",
            "callbacks.text_sample.max_new_tokens=5",
        ],
        out,
    )
    assert math.isfinite(ppl) and ppl > 1.0

    ckpt = _load(out / "checkpoints" / "best.ckpt")
    assert (out / "checkpoints" / "last.ckpt").is_file()
    hp = ckpt["hyper_parameters"]
    assert hp["model"]["cell"] == model
    assert hp["optim"]["_target_"] == OPTIM_CLASS[optim]
    # The trained network really is that cell: the input weights stack one block per gate.
    weight = ckpt["state_dict"]["model.rnn.weight_ih_l0"]
    assert weight.shape == (GATES[model] * 16, 16)
    # ... and the optimiser state is that optimiser's.
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    if optim == "asgd":
        assert group["t0"] == 1000
    elif optim == "sgd":
        assert "momentum" in group and "betas" not in group
    else:
        assert "betas" in group
        assert group["weight_decay"] == (0.01 if optim == "adamw" else 0.0)
    # The best validation loss stored in the checkpoint is the perplexity train() returned.
    best_loss = ckpt["rnnlm"]["best_val_loss"]
    assert math.isfinite(best_loss)
    assert math.exp(best_loss) == pytest.approx(ppl, rel=1e-6)
    assert ckpt["global_step"] == 3  # trainer.limit_train_batches=3


def test_train_word_level_tied_two_layers_cosine(corpus_dir: Path, tmp_path: Path) -> None:
    """Options the pairs above leave out: word tokens, tied weights, 2 layers, cosine schedule."""
    from rnnlm import LanguageModel

    out = tmp_path / "run"
    ppl = train_in_process(
        [
            *tiny_overrides(corpus_dir),
            "data.tokenizer=word",
            "model=lstm",
            "model.num_layers=2",
            "model.tie_weights=true",
            "scheduler=cosine",
        ],
        out,
    )
    assert math.isfinite(ppl) and ppl > 1.0
    ckpt = _load(out / "checkpoints" / "best.ckpt")
    assert ckpt["rnnlm"]["tokenizer"]["kind"] == "word"
    assert ckpt["hyper_parameters"]["model"]["tie_weights"] is True
    assert "model.rnn.weight_ih_l1" in ckpt["state_dict"]

    lm = LanguageModel.load(out / "checkpoints" / "best.ckpt")
    assert lm.model.decoder.weight is lm.model.embedding.weight  # still tied after loading
    text = lm.generate("the cat", max_new_tokens=5, seed=0)
    assert text.startswith("the cat") and len(text) > len("the cat")
    assert len(text.split()) <= 7  # 2 prompt words + at most 5 new ones (<eos> is a line break)
    assert lm.generate("the cat", max_new_tokens=5, seed=0) == text


def test_train_with_plateau_scheduler(corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ppl = train_in_process([*tiny_overrides(corpus_dir), "optim=sgd", "scheduler=plateau"], out)
    assert math.isfinite(ppl)
    ckpt = _load(out / "checkpoints" / "last.ckpt")
    assert ckpt["lr_schedulers"], "the scheduler state is saved"


def test_plateau_scheduler_steps_after_each_validation_even_across_epochs(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """Validation every 3 steps regardless of epochs (as `make bench-quality` runs): the plateau
    scheduler is stepped once per validation, with its loss, and an epoch that ends before any
    validation is no error."""
    out = tmp_path / "run"
    overrides = [*tiny_overrides(corpus_dir), "optim=sgd", "scheduler=plateau", "test=false"]
    overrides += ["+trainer.max_steps=9", "trainer.max_epochs=-1", "trainer.val_check_interval=3"]
    overrides += ["trainer.check_val_every_n_epoch=null", "trainer.num_sanity_val_steps=0"]
    train_in_process(overrides, out)
    state = _load(out / "checkpoints" / "last.ckpt")["lr_schedulers"][0]
    assert state["last_epoch"] == 3  # three validations: steps 3, 6 and 9


class _FakeClock:
    """A monotonic clock that moves `tick` seconds at every reading: the run's 'speed' is then a
    function of its code path alone, not of how busy the machine is."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 1000.0, tick

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now


def test_time_budget_ends_the_schedule_with_max_time(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """callbacks.time_budget: a run planned for far more steps than fit in trainer.max_time is
    re-planned from its own speed; the cosine ends at the step where the run stops, inside the budget,
    and that last model is validated. Time is an injected clock read by Lightning's Timer and by
    TimeBudget (never the wall clock: a busy machine would move the step where max_time stops)."""
    import csv
    import time
    import types

    import lightning.pytorch.callbacks.timer as timer_module

    import rnnlm.training.callbacks as callbacks_module

    clock = _FakeClock(tick=0.01)
    fake_time = types.SimpleNamespace(monotonic=clock.monotonic, perf_counter=time.perf_counter)
    monkeypatch.setattr(timer_module, "time", fake_time)
    monkeypatch.setattr(callbacks_module, "time", fake_time)

    out = tmp_path / "run"
    overrides = [*tiny_overrides(corpus_dir), "scheduler=cosine", "test=false", "logger=csv"]
    overrides += [
        "trainer.max_epochs=-1",
        "trainer.limit_train_batches=1.0",
        "+trainer.max_steps=10000000",
    ]
    overrides += ["trainer.max_time=00:00:00:06", "trainer.val_check_interval=40"]
    overrides += ["trainer.check_val_every_n_epoch=null", "trainer.num_sanity_val_steps=0"]
    overrides += ["callbacks.time_budget.enabled=true", "callbacks.time_budget.every_n_steps=10"]
    overrides += ["callbacks.time_budget.reserve_s=2.0"]
    train_in_process(overrides, out)
    ckpt = _load(out / "checkpoints" / "last.ckpt")
    steps = ckpt["global_step"]
    sched = ckpt["lr_schedulers"][0]
    assert 40 < steps < 10_000_000
    assert sched["T_max"] == steps  # the cosine was moved to the step the run stopped at
    assert sched["_last_lr"][0] == pytest.approx(0.0, abs=1e-9)  # ... and ended there
    timer = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Timer"))
    assert timer["time_elapsed"]["train"] < 6.0  # stopped by the plan, not by max_time
    with open(next(out.glob("**/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    val_steps = [int(r["step"]) for r in rows if r.get("val/loss")]
    assert val_steps[-1] == steps - 1 or val_steps[-1] == steps  # the last model was scored


def test_time_budget_needs_max_time() -> None:
    from types import SimpleNamespace

    from rnnlm.errors import UserError
    from rnnlm.training.callbacks import TimeBudget

    with pytest.raises(UserError, match=r"set trainer.max_time"):
        TimeBudget(enabled=True).on_train_start(SimpleNamespace(callbacks=[]), None)
    TimeBudget(enabled=False).on_train_start(SimpleNamespace(callbacks=[]), None)  # off: no check


def test_time_budget_resumes_with_its_plan() -> None:
    """The plan travels in checkpoints: a resumed run goes on with the re-planned step count (which a
    whole-run cosine's T_max, restored with the scheduler, follows) and the validation time measured,
    not with the config's original estimate."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from rnnlm.training.callbacks import TimeBudget

    before = TimeBudget(enabled=True)
    before.total, before.replans, before._val_seconds, before._validations = 740, 3, 12.5, 4
    after = TimeBudget(enabled=True)
    after.load_state_dict(before.state_dict())
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(max_steps=-1))
    trainer = SimpleNamespace(
        callbacks=[Timer(duration="00:00:10:00")], fit_loop=loop, estimated_stepping_batches=5000
    )
    after.on_train_start(trainer, None)
    assert after.total == 740 and loop.epoch_loop.max_steps == 740
    assert (after._val_seconds, after._validations) == (12.5, 4)


def test_a_run_without_validation_reports_no_perplexity(corpus_dir: Path, tmp_path: Path) -> None:
    """No validation ran: the best validation perplexity is missing (NaN, which a sweeper records as a
    failed trial), not exp(inf) capped to 1e304 and reported as a result."""
    import json

    out = tmp_path / "run"
    ppl = train_in_process([*tiny_overrides(corpus_dir), "trainer.limit_val_batches=0"], out)
    assert math.isnan(ppl)
    result = json.loads((out / "result.json").read_text())
    assert result["best_val_ppl"] is None or math.isnan(result["best_val_ppl"])


def test_train_with_tensorboard_and_csv_loggers(corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ppl = train_in_process([*tiny_overrides(corpus_dir), "logger=many", "test=false"], out)
    assert math.isfinite(ppl)
    metrics = list((out / "csv").glob("**/metrics.csv"))
    assert metrics, "logger=many writes a CSV log"
    assert "val/loss" in metrics[0].read_text().splitlines()[0]
    assert list((out / "tensorboard").glob("*/events.out.tfevents.*"))


# ==================================================================================================
# Reproducibility
# ==================================================================================================
def test_same_seed_gives_identical_val_loss(corpus_dir: Path, tmp_path: Path) -> None:
    args = [*tiny_overrides(corpus_dir), "model=lstm", "callbacks.text_sample.max_new_tokens=5"]
    a = train_in_process([*args, "seed=7"], tmp_path / "a")
    b = train_in_process([*args, "seed=7"], tmp_path / "b")
    c = train_in_process([*args, "seed=8"], tmp_path / "c")
    assert a == b  # bit-identical on CPU
    la = _load(tmp_path / "a" / "checkpoints" / "last.ckpt")
    lb = _load(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert la["rnnlm"]["best_val_loss"] == lb["rnnlm"]["best_val_loss"]
    for key, value in la["state_dict"].items():
        assert torch.equal(value, lb["state_dict"][key]), key
    assert c != a  # and the seed does matter


# ==================================================================================================
# A multirun through src/train.py: job folders, TensorBoard runs named by overrides, checkpoints
# ==================================================================================================
@pytest.fixture(scope="module")
def multirun(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    sweep = tmp_path_factory.mktemp("multirun")
    proc = run_train_script(
        [
            "-m",
            "model=rnn,gru",
            "optim=adam,sgd",
            *tiny_overrides(corpus_dir),
            "callbacks.text_sample.max_new_tokens=5",
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def test_multirun_leaves_job_folders_with_tensorboard_and_checkpoints(multirun: Path) -> None:
    jobs = sorted(p.name for p in multirun.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1", "2", "3"]
    combos = set()
    for job in jobs:
        job_dir = multirun / job
        overrides = [str(o) for o in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")]
        model = next(o for o in overrides if o.startswith("model="))
        optim = next(o for o in overrides if o.startswith("optim="))
        combos.add((model, optim))

        runs = [p for p in (job_dir / "tensorboard").iterdir() if p.is_dir()]
        assert len(runs) == 1, runs
        name = runs[0].name
        assert list(runs[0].glob("events.out.tfevents.*")), f"no event file in {runs[0]}"
        # The run name shows this job's overrides (sweep values included) ...
        parts = name.split(",")
        assert model in parts and optim in parts, name
        assert "model.hidden_dim=16" in parts and "data.bptt=8" in parts, name
        # ... but not the ones about how/where to run.
        assert not any(p.startswith(("debug=", "hydra.", "callbacks.")) for p in parts), name

        assert (job_dir / "checkpoints" / "best.ckpt").is_file()
        assert (job_dir / "checkpoints" / "last.ckpt").is_file()
        assert (job_dir / "train.log").is_file()
    assert combos == {(f"model={m}", f"optim={o}") for m in ("rnn", "gru") for o in ("adam", "sgd")}


def test_multirun_tensorboard_holds_the_curves(multirun: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = next((multirun / "3" / "tensorboard").iterdir())
    acc = EventAccumulator(str(run))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "val/loss", "val/ppl", "test/ppl"):
        assert tag in scalars, (tag, sorted(scalars))
    val_ppl = acc.Scalars("val/ppl")[-1].value
    val_loss = acc.Scalars("val/loss")[-1].value
    assert val_ppl == pytest.approx(math.exp(val_loss), rel=1e-4)


def test_checkpoint_loads_weights_only_and_generates(multirun: Path) -> None:
    from rnnlm import LanguageModel

    for name in ("best.ckpt", "last.ckpt"):
        path = multirun / "0" / "checkpoints" / name
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # no pickled objects
        tok = ckpt["rnnlm"]["tokenizer"]
        assert tok["kind"] == "char"
        assert tok["itos"][0] == "<unk>" and "\n" in tok["itos"]
        assert ckpt["hyper_parameters"]["vocab_size"] == len(tok["itos"])
        assert ckpt["rnnlm"]["config"]["model"]["cell"] in ("rnn", "gru")

    lm = LanguageModel.load(multirun / "0" / "checkpoints" / "best.ckpt")
    text = lm.generate("a", max_new_tokens=5, seed=0)
    assert isinstance(text, str) and text.startswith("a") and len(text) > 1
    assert lm.generate("a", max_new_tokens=5, seed=0) == text  # the seed fixes the sample
    assert len(lm.tokenizer.encode(text)) <= 6 or "<unk>" in text
    score = lm.score("the cat sat on the mat\n")
    assert math.isfinite(score.perplexity) and score.perplexity > 1.0


# ==================================================================================================
# DDP on CPU: two processes, each reading its own contiguous shard
# ==================================================================================================
RANK_LINE = re.compile(r"data: rank (\d)/(\d) reads (\w+) tokens \[(\d+), (\d+)\)")


def _rank_ranges(log: Path) -> dict[tuple[int, str], tuple[int, int]]:
    ranges = {}
    for m in RANK_LINE.finditer(log.read_text()):
        rank, world, split, lo, hi = int(m[1]), int(m[2]), m[3], int(m[4]), int(m[5])
        assert world == 2
        ranges[(rank, split)] = (lo, hi)
    return ranges


def test_ddp_cpu_ranks_read_different_contiguous_shards(corpus_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    proc = run_train_script(
        [
            "trainer=ddp_cpu",
            *tiny_overrides(corpus_dir),
            "callbacks.text_sample.max_new_tokens=5",
            f"hydra.run.dir={run_dir}",
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = sorted(p.name for p in run_dir.glob("*.log"))
    # Rank 0 logs to train.log; Lightning re-launches rank 1 with hydra.job.name=train_ddp_process_1.
    assert logs == ["train.log", "train_ddp_process_1.log"], logs
    rank0 = _rank_ranges(run_dir / "train.log")
    rank1 = _rank_ranges(run_dir / "train_ddp_process_1.log")
    assert {r for r, _ in rank0} == {0} and {r for r, _ in rank1} == {1}
    run_config = _load(run_dir / "checkpoints" / "last.ckpt")["rnnlm"]["config"]
    assert run_config["trainer"]["devices"] == 2
    for split in ("train", "valid", "test"):
        lo0, hi0 = rank0[(0, split)]
        lo1, hi1 = rank1[(1, split)]
        n = hi0 - lo0
        assert n > 0
        assert (lo0, hi0, lo1, hi1) == (0, n, n, 2 * n), (split, rank0, rank1)
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    # every rank's carried state and RNG, for an exact resume (test_reliability's ddp case)
    assert len(_load(run_dir / "checkpoints" / "last.ckpt")["rnnlm"]["ranks"]) == 2


@pytest.mark.slow  # ~25 s: two spawned ranks
def test_ddp_spawn_reports_the_ranks_totals(corpus_dir: Path, tmp_path: Path) -> None:
    # ddp_spawn trains in child processes and hands the launching one only the weights and the logged
    # metrics: result.json used to say steps 0 and epochs 0.
    run_dir = tmp_path / "spawn"
    proc = run_train_script(
        [
            "trainer=ddp_cpu",
            "trainer.strategy=ddp_spawn",
            *tiny_overrides(corpus_dir),
            "trainer.max_epochs=2",
            "callbacks.text_sample.max_new_tokens=5",
            f"hydra.run.dir={run_dir}",
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    ckpt = _load(run_dir / "checkpoints" / "last.ckpt")
    assert result["steps"] == ckpt["global_step"] == 2 * 5  # 2 epochs of limit_train_batches=5
    assert result["epochs"] == 2
    assert result["tokens_seen"] == ckpt["rnnlm"]["tokens_seen"] > 0
    assert result["tokens_per_sec"] > 0


# ==================================================================================================
# Every config file composes
# ==================================================================================================
CONF_OPTIONS = sorted(
    (p.parent.name, p.stem)
    for p in CONF_DIR.glob("*/*.yaml")
    if p.parent.name not in ("hydra", "shared")  # shared/: parts of options, not options
)


def test_config_options_are_discovered() -> None:
    groups = {g for g, _ in CONF_OPTIONS}
    assert {"data", "model", "optim", "trainer", "debug", "experiment", "callbacks"} <= groups
    assert {o for g, o in CONF_OPTIONS if g == "model"} >= set(MODELS)
    assert {o for g, o in CONF_OPTIONS if g == "optim"} >= set(OPTIMS)


@pytest.mark.parametrize(
    ("group", "option"), CONF_OPTIONS, ids=[f"{g}={o}" for g, o in CONF_OPTIONS]
)
def test_every_config_file_composes(group: str, option: str, tmp_path: Path) -> None:
    overrides = [f"{group}={option}"]
    if (group, option) in (("data", "text_files"), ("data", "pairs")) or (group, option[:6]) in (
        ("experiment", "bench_"),
        ("experiment", "cells_"),
    ):
        overrides.append(f"data.path={tmp_path}")  # corpus folders the user names
    if (group, option) == ("data", "hf"):
        overrides.append(f"data.hf_name={tmp_path}")  # the dataset the user names
    with composed(overrides, tmp_path / "out") as cfg:
        # Every interpolation resolves and no mandatory value is left unset.
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        assert resolved["paths"]["output_dir"] == str(tmp_path / "out")
        if group == "debug":
            assert cfg.trainer.max_epochs >= 1
        # The objects the run builds from it can be built.
        cutoffs = (
            cfg.model.get("adaptive_cutoffs") if cfg.model.get("softmax") == "adaptive" else None
        )
        vocab = max(cutoffs) + 5 if cutoffs else 11  # a recipe's cutoffs must fit the vocabulary
        if str(cfg.model._target_).rsplit(".", 1)[-1].startswith("Seq2Seq"):  # translation models
            from rnnlm.inference.translator import build_translation_model

            model = build_translation_model(OmegaConf.to_container(cfg.model), vocab, vocab, False)
            ids = torch.full((1, 3), 5, dtype=torch.long)
            assert torch.isfinite(model.nll(ids, torch.tensor([3]), ids))
        else:
            model = instantiate(cfg.model, vocab_size=vocab)
            logits, _ = model(torch.zeros(1, 3, dtype=torch.long))
            assert logits.shape == (1, 3, vocab)
        instantiate(cfg.optim, params=model.parameters())
        instantiate(cfg.data)
        for cb in (cfg.get("callbacks") or {}).values():
            if cb is not None and "_target_" in cb:
                instantiate(cb)


def test_text_files_without_path_is_missing(tmp_path: Path) -> None:
    """`data=text_files` must not silently fall back to the bundled corpus when data.path is unset."""
    with composed(["data=text_files"], tmp_path) as cfg:
        assert OmegaConf.is_missing(cfg.data, "path"), (
            f"data.path is {cfg.data.path!r}, not ???: a run would train on the bundled Shakespeare"
        )


# ==================================================================================================
# User errors: non-zero exit, one line on stderr, no traceback
# ==================================================================================================
def _error_cases(root: Path, corpus: Path) -> dict[str, list[str]]:
    no_valid = write_corpus(root / "no_valid", {"train": 40, "test": 10})
    empty = write_corpus(root / "empty", {"train": 40, "valid": 10, "test": 10})
    (empty / "test.txt").write_text("")
    short = write_corpus(root / "short", {"train": 40, "valid": 10, "test": 10})
    (short / "valid.txt").write_text("a cat\n")  # 6 characters < 4 * (8 + 1)
    return {
        "missing_path": ["data=text_files", *tiny_overrides(corpus)[2:]],
        "nonexistent_path": tiny_overrides(root / "does_not_exist"),
        "no_valid": tiny_overrides(no_valid),
        "empty_split": tiny_overrides(empty),
        "short_split": tiny_overrides(short),
        "tie_weights": [
            *tiny_overrides(corpus),
            "model.tie_weights=true",
            "model.embedding_dim=16",
            "model.hidden_dim=32",
        ],
        "unknown_model": [*tiny_overrides(corpus), "model=foo"],
    }


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path):
    """Every error case, each its own `src/train.py` process (forked after one shared import)."""
    root = tmp_path_factory.mktemp("errors")
    cases = {
        name: [
            *args,
            "callbacks.text_sample.max_new_tokens=5",
            f"hydra.run.dir={root / 'runs' / name}",
        ]
        for name, args in _error_cases(root, corpus_dir).items()
    }
    return run_train_script_cases(cases, root / "procs")


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, f"exit 0; stdout tail:\n{proc.stdout[-1500:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = _stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def test_error_data_path_missing(error_runs) -> None:
    _assert_one_line_error(error_runs["missing_path"], "data.path")


def test_error_data_path_not_a_folder(error_runs) -> None:
    _assert_one_line_error(
        error_runs["nonexistent_path"], "data.path", "does_not_exist", "not a folder"
    )


def test_error_folder_lacking_valid_txt(error_runs) -> None:
    _assert_one_line_error(error_runs["no_valid"], "valid.txt")


def test_error_empty_split_file(error_runs) -> None:
    _assert_one_line_error(error_runs["empty_split"], "test", "empty")


def test_error_split_too_short_names_the_sizes(error_runs) -> None:
    _assert_one_line_error(
        error_runs["short_split"],
        "valid split has 6 tokens",
        "batch_size",
        "bptt",
        "4 * (8 + 1) = 36",
    )


def test_error_tie_weights_with_unequal_sizes(error_runs) -> None:
    _assert_one_line_error(
        error_runs["tie_weights"],
        "model.tie_weights",
        "model.embedding_dim",
        "model.hidden_dim",
        "16",
        "32",
    )


def test_error_unknown_model_lists_the_choices(error_runs) -> None:
    proc = error_runs["unknown_model"]
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "model/foo" in proc.stderr, proc.stderr
    # Hydra names the options of the group (one per line, or a one-line summary).
    after = proc.stderr[proc.stderr.index("model/foo") :]
    listed = set(re.findall(r"\b\w+\b", after))
    assert set(MODELS) <= listed, proc.stderr
