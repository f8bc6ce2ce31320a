"""Finding the run to resume, and what a resume may change (`python src/train.py resume=<run | ckpt | latest>`).

A resumed run keeps its own config: the checkpoint's weights, vocabulary, optimizer and scheduler state
are built on its model, data, optimiser, schedule and seed, so an override of any of those is refused
(an override the run would silently ignore is worse than none). What may change is listed in
RESUME_MAY_CHANGE: how long it trains, how it validates, logs and checkpoints, and where it runs.

Everything here runs before Hydra starts (rnnlm.cli.prepare_argv) and imports neither torch nor
Lightning, so a refused resume answers at once and leaves every file of the run as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlm.errors import UserError
from rnnlm.inference.checkpoint import check_archive
from rnnlm.training.run_folder import RESULT_FILE, FolderInUse, describe_owner, launch_rank, owner

LAST = "last.ckpt"
BEST = "best.ckpt"

# Keys (and whole groups) a resume may override; a key under one of them is allowed too.
RESUME_MAY_CHANGE = (
    # how long it trains
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.min_epochs",
    "trainer.min_steps",
    # how it validates, logs and checkpoints
    "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
    "trainer.num_sanity_val_steps",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.detect_nonfinite",
    "callbacks",
    "logger",
    "test",
    # where and how it runs
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "compile",
    # the command itself
    "resume",
    "hydra",
    "paths",
)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_may_change(key: str) -> bool:
    return any(key == k or key.startswith((f"{k}.", f"{k}/")) for k in RESUME_MAY_CHANGE)


def check_resume_overrides(overrides: list[str], run: Path | str) -> None:
    """Refuse, in one line naming them, the overrides that would change what the resumed run trains."""
    refused = [o for o in overrides if not o.startswith("-") and not resume_may_change(_key(o))]
    if refused:
        raise UserError(
            f"resume: {' '.join(refused)} would change what run {run} trains; a resumed run keeps its "
            "own model, data, optimiser, schedule and seed (its checkpoint is built on them): start "
            "a new run for that, or change only how long it trains, how it validates, logs and "
            "checkpoints, or where it runs (e.g. trainer.max_epochs, trainer.max_time, callbacks.*, "
            "logger; the list: docs/reliability.md#resume)"
        )


# -- which run ---------------------------------------------------------------------------------------
def _runs_root(log_dir: str | Path) -> Path:
    return Path(log_dir) / "train" / "runs"


def is_run_folder(path: Path) -> bool:
    """A folder src/train.py ran in (its composed config is what a resume continues with)."""
    return (path / ".hydra" / "config.yaml").is_file()


def _result(run: Path) -> dict:
    try:
        data = json.loads((run / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def why_not_resumable(run: Path) -> str:
    """What a run folder without checkpoints/last.ckpt is, in a few words."""
    if (run / "checkpoints" / BEST).is_file():
        return f"it has checkpoints/{BEST} but no {LAST}"
    result = _result(run)
    status = result.get("status")
    holder = owner(run)
    if holder is not None:
        return (
            f"it is still running, in {describe_owner(holder)}, and has written no checkpoint yet"
        )
    if status == "failed":
        error = str(result.get("error") or "see its train.log")
        return f"it failed before it wrote a checkpoint: {error[:200]}"
    if status == "interrupted":
        return "it was interrupted before it wrote a checkpoint"
    if status == "running":
        return "it was stopped (killed) before it wrote a checkpoint"
    if status == "finished":
        return "it finished without writing a checkpoint (callbacks without model_checkpoint?)"
    return "it stopped before training began"


def _its_command(run: Path) -> str:
    saved = run / ".hydra" / "overrides.yaml"
    args = ""
    if saved.is_file():
        try:
            args = " ".join(str(o) for o in OmegaConf.load(saved))
        except Exception:  # an unreadable file: the plain command still helps
            args = ""
    return f"python src/train.py {args}".rstrip()


def _no_last(value: str, run: Path) -> UserError:
    holder = owner(run)
    if holder is not None:
        return FolderInUse(
            f"resume={value}: run {run} is still running, in {describe_owner(holder)}, and has "
            "written no checkpoint yet: wait for it, or stop it"
        )
    best = run / "checkpoints" / BEST
    if best.is_file():
        return UserError(
            f"resume={value}: {run} has no checkpoints/{LAST} ({why_not_resumable(run)}): pass "
            f"resume={best} to continue from its best checkpoint"
        )
    return UserError(
        f"resume={value}: {run} has nothing to resume ({why_not_resumable(run)}): start it again "
        f"(its command was `{_its_command(run)}`)"
    )


def find_resume(value: str, log_dir: str | Path) -> tuple[Path, str]:
    """(run folder, checkpoint to continue from) for `resume=<value>`.

    `latest` is the newest run folder under outputs/train/runs. If that run has no last.ckpt but an
    older one has, resuming the older one would be a surprise: refused, naming both.
    """
    if value == "latest":
        root = _runs_root(log_dir)
        runs = sorted(
            (p for p in root.iterdir() if p.is_dir() and is_run_folder(p)) if root.is_dir() else [],
            key=lambda p: p.name,  # folder names are timestamps
        )
        resumable = [p for p in runs if (p / "checkpoints" / LAST).is_file()]
        if not resumable:
            newest = f" (the latest, {runs[-1]}: {why_not_resumable(runs[-1])})" if runs else ""
            raise UserError(
                f"resume=latest found no run with checkpoints/{LAST} under {root}{newest}: train one "
                "first (`make train`) or pass resume=<run folder or .ckpt file>"
            )
        run = resumable[-1]
        if runs[-1] != run:
            raise UserError(
                f"resume=latest: the latest run, {runs[-1]}, cannot be resumed "
                f"({why_not_resumable(runs[-1])}), and the latest that can, {run}, is older: pass "
                f"resume={run} if that is the one you mean"
            )
        return run.resolve(), str((run / "checkpoints" / LAST).resolve())
    path = Path(value).expanduser()
    if path.is_dir():
        if not is_run_folder(path):
            raise UserError(
                f"resume={value}: {path} is not a run folder of src/train.py (it has no "
                f".hydra/config.yaml or {RESULT_FILE}): pass a run folder under outputs/train/runs, "
                "a .ckpt file, or resume=latest"
            )
        if not (path / "checkpoints" / LAST).is_file():
            raise _no_last(value, path)
        return path.resolve(), str((path / "checkpoints" / LAST).resolve())
    if path.is_file():
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        if not is_run_folder(run):
            raise UserError(
                f"resume={value}: {path} is not inside a run folder of src/train.py (no "
                f"{run / '.hydra' / 'config.yaml'}), whose config a resume continues with: pass "
                f"ckpt_path={path} to start a new run from it instead"
            )
        return run.resolve(), str(path.resolve())
    raise UserError(
        f"resume={value} does not exist: pass a run folder, a .ckpt file, or resume=latest"
    )


# -- its config ---------------------------------------------------------------------------------------
RESUME_CHANGES = "resume_overrides.yaml"  # in <run>/.hydra/: what earlier resumes changed, kept


def load_run_config(
    run_dir: Path, current: DictConfig, overrides: list[str]
) -> tuple[DictConfig, dict[str, Any]]:
    """The resumed run's own composed config, with what earlier resumes changed (RESUME_CHANGES) and
    the allowed `overrides` of this command taken from `current` (the config Hydra composed for it),
    e.g. `resume=latest trainer.max_epochs=10`. Also returns this command's changes, which the run
    keeps (save_resume_changes) once its attempt begins, so a later plain `resume=<run>` goes on
    with them."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise UserError(
            f"cannot resume {run_dir}: it has no .hydra/config.yaml (not a run folder of src/train.py)"
        )
    check_resume_overrides(overrides, run_dir)
    cfg = OmegaConf.load(saved)
    assert isinstance(cfg, DictConfig)
    OmegaConf.set_struct(cfg, False)
    changes: dict[str, Any] = {}
    for key in dict.fromkeys(_key(o) for o in overrides):
        if key == "resume" or key.startswith(("hydra", "paths")):
            continue
        node = OmegaConf.select(current, key)
        changes[key] = OmegaConf.to_container(node) if OmegaConf.is_config(node) else node
    for key, value in {**_saved_changes(run_dir), **changes}.items():
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    cfg.resume = None
    cfg.paths = current.paths
    cfg.paths.output_dir = str(run_dir)
    return cfg, changes


def _saved_changes(run_dir: Path) -> dict[str, Any]:
    path = run_dir / ".hydra" / RESUME_CHANGES
    if not path.is_file():
        return {}
    loaded = OmegaConf.to_container(OmegaConf.load(path))
    return loaded if isinstance(loaded, dict) else {}


def save_resume_changes(run_dir: Path, changes: dict[str, Any]) -> None:
    """Keep this resume's changes with the run (written when its attempt begins)."""
    if not changes:
        return
    path = run_dir / ".hydra" / RESUME_CHANGES
    merged = {**_saved_changes(run_dir), **changes}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(merged)))
    os.replace(tmp, path)


# -- the command line -----------------------------------------------------------------------------------
def resume_target(argv: list[str]) -> str | None:
    values = [a.split("=", 1)[1] for a in argv if a.startswith("resume=")]
    return values[-1] if values and values[-1] not in ("", "null") else None


def log_dir(argv: list[str]) -> str:
    """Where runs are looked for: paths.log_dir= on the command line, else RNNLM_OUTPUT_DIR, else outputs."""
    given = [a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("paths.log_dir=")]
    return given[-1] if given else os.environ.get("RNNLM_OUTPUT_DIR", "outputs")


def resume_argv(argv: list[str]) -> list[str]:
    """Make a `resume=` command run inside the resumed run's own folder (same log, same TensorBoard run),
    without overwriting the config that folder holds; refuse a resume that cannot work (its overrides,
    its checkpoint file) before anything is written. Applied before Hydra parses the command line."""
    value = resume_target(argv)
    if value is None:
        return argv
    # A DDP rank that Lightning started has rank 0's command line; one that torchrun started does not.
    if launch_rank() != 0 and any(a.startswith("hydra.run.dir=") for a in argv):
        return argv
    run_dir, ckpt = find_resume(value, log_dir(argv))
    given = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
    if given and Path(given[-1]).expanduser().resolve() != run_dir:
        raise UserError(
            f"resume={value} runs in its own folder, {run_dir}: leave out hydra.run.dir={given[-1]} "
            "(a new run in another folder is `python src/train.py ckpt_path=<checkpoint> ...`)"
        )
    check_resume_overrides([a for a in argv if not a.startswith("resume=")], run_dir)
    check_archive(ckpt)
    keep = [a for a in argv if not a.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    return [*keep, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
