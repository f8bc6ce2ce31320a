"""Finding the run to resume and its own config (`python src/train.py resume=<run | ckpt | latest>`)."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rnnlm.errors import UserError

LAST = "last.ckpt"


def _runs_root(log_dir: str | Path) -> Path:
    return Path(log_dir) / "train" / "runs"


def find_resume(value: str, log_dir: str | Path) -> tuple[Path, str]:
    """(run folder, checkpoint to continue from) for `resume=<value>`."""
    if value == "latest":
        root = _runs_root(log_dir)
        runs = (
            sorted(p.parent.parent for p in root.glob(f"*/checkpoints/{LAST}"))
            if root.is_dir()
            else []
        )
        if not runs:
            raise UserError(
                f"resume=latest found no run with checkpoints/{LAST} under {root}: "
                "train one first (`make train`) or pass resume=<run folder or .ckpt file>"
            )
        run = max(runs, key=lambda p: p.name)  # folder names are timestamps
        return run.resolve(), str((run / "checkpoints" / LAST).resolve())
    path = Path(value).expanduser()
    if path.is_dir():
        ckpt = path / "checkpoints" / LAST
        if not ckpt.is_file():
            raise UserError(
                f"resume={value}: {ckpt} does not exist; is {path} a run folder of src/train.py?"
            )
        return path.resolve(), str(ckpt.resolve())
    if path.is_file():
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run.resolve(), str(path.resolve())
    raise UserError(
        f"resume={value} does not exist: pass a run folder, a .ckpt file, or resume=latest"
    )


def load_run_config(run_dir: Path, current: DictConfig) -> DictConfig:
    """The resumed run's own composed config; dotted overrides given with `resume=` are applied on top
    (e.g. `resume=latest trainer.max_epochs=10` trains longer)."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise UserError(
            f"cannot resume {run_dir}: it has no .hydra/config.yaml (not a run folder of src/train.py)"
        )
    cfg = OmegaConf.load(saved)
    assert isinstance(cfg, DictConfig)
    extra = []
    if HydraConfig.initialized():
        for o in HydraConfig.get().overrides.task:
            key = o.split("=", 1)[0].lstrip("+~")
            if "." in key and not key.startswith(("hydra.", "paths.")):
                extra.append(o.lstrip("+"))
    OmegaConf.set_struct(cfg, False)
    cfg.merge_with(OmegaConf.from_dotlist(extra))
    cfg.resume = None
    cfg.paths = current.paths
    cfg.paths.output_dir = str(run_dir)
    return cfg


def resume_argv(argv: list[str]) -> list[str]:
    """Make a `resume=` command run inside the resumed run's own folder (same log, same TensorBoard run),
    without overwriting the config that folder holds. Applied before Hydra parses the command line."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith("resume=")]
    if (
        not values
        or not values[-1]
        or values[-1] == "null"
        or any(a.startswith("hydra.run.dir=") for a in argv)
    ):
        return argv
    run_dir, _ = find_resume(values[-1], os.environ.get("RNNLM_OUTPUT_DIR", "outputs"))
    return [*argv, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
