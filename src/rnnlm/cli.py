"""Entry-point plumbing shared by the scripts in src/ and the installed console scripts."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from rnnlm.errors import UserError

log = logging.getLogger("rnnlm")
T = TypeVar("T")

# conf/ at the repository root (the package is installed in editable mode from src/).
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def user_message(err: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(err, InstantiationException) and isinstance(
        err.__cause__, ValueError | TypeError
    ):
        err = err.__cause__
    if isinstance(err, UserError | ValueError | OmegaConfBaseException):
        return " ".join(str(err).split())
    return None


def run_task(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run a Hydra task; bad input becomes `error: <one line>` and exit status 2.

    In a multirun the job is recorded as failed and the other jobs go on. RNNLM_DEBUG=1 shows the
    full traceback instead.
    """
    try:
        return fn(cfg)
    except Exception as err:
        msg = user_message(err)
        if msg is None or os.environ.get("RNNLM_DEBUG"):
            raise
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("job failed: %s", msg)
            raise UserError(msg) from None
        print(f"error: {msg}", file=sys.stderr, flush=True)
        sys.exit(2)


def prepare_argv(config_name: str = "train") -> None:
    """Before Hydra reads sys.argv: point a resumed run at its own folder, then validate the overrides so
    a bad command stops at once with one line (and leaves nothing in outputs/).

    Commands with Hydra flags (-m, --cfg, --help, ...) are validated per job instead.
    """
    from rnnlm.config_check import validate_overrides

    try:
        args = sys.argv[1:]
        if config_name == "train":
            from rnnlm.training.resume import resume_argv

            args = sys.argv[1:] = resume_argv(args)
        if not any(a.startswith("-") for a in args):
            validate_overrides(config_name, CONF_DIR, args)
    except UserError as err:
        if os.environ.get("RNNLM_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def hydra_entry(task: Callable[[DictConfig], Any], config_name: str) -> Callable[[], Any]:
    """A console-script entry point running `task` under @hydra.main with the repo's conf/."""
    import hydra

    def main() -> Any:
        prepare_argv(config_name)
        return hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)(
            lambda cfg: run_task(task, cfg)
        )()

    return main


def _train(cfg: DictConfig) -> float:
    from rnnlm.training.run import train

    return train(cfg)


def _evaluate(cfg: DictConfig) -> dict:
    from rnnlm.evaluate import evaluate

    return evaluate(cfg)


def _generate(cfg: DictConfig) -> list[str]:
    from rnnlm.generate import generate

    return generate(cfg)


def _search(cfg: DictConfig) -> list:
    from rnnlm.applications.search import search

    return search(cfg)


def _rank(cfg: DictConfig) -> list:
    from rnnlm.applications.rank import rank

    return rank(cfg)


train_cli = hydra_entry(_train, "train")
eval_cli = hydra_entry(_evaluate, "eval")
generate_cli = hydra_entry(_generate, "generate")
search_cli = hydra_entry(_search, "search")
rank_cli = hydra_entry(_rank, "rank")
