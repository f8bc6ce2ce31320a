"""Entry-point plumbing shared by the scripts in src/ and the installed console scripts."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from rnnlm.config import CONF_DIR, in_multirun
from rnnlm.errors import UserError, exit_code, user_message

log = logging.getLogger("rnnlm")
T = TypeVar("T")


def run_task(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T | None:
    """Run a Hydra task; a known error becomes `error: <one line>` and its exit status (rnnlm.errors).

    In a multirun the job is recorded as failed (its result.json, its log) and the sweep goes on; the
    sweep ends with one summary of its failed jobs (rnnlm.training.sweep_end). RNNLM_DEBUG=1 shows the
    full traceback instead.
    """
    try:
        return fn(cfg)
    except Exception as err:
        msg = user_message(err)
        debug = bool(os.environ.get("RNNLM_DEBUG"))
        if in_multirun() and not debug:
            if msg is None:
                log.exception("job failed: %r", err)
            else:
                log.error("job failed: %s", msg)
            return None  # a failed trial to Optuna's sweeper (NaN would make it raise)
        if msg is None:
            raise
        if debug:
            traceback.print_exc()
        else:
            print(f"error: {msg}", file=sys.stderr, flush=True)
        sys.exit(exit_code(err))


def prepare_argv(config_name: str = "train") -> None:
    """Before Hydra reads sys.argv: check the command and refuse a bad one in one line, so that nothing
    is written (not even the run folder) and torch is never loaded for it.

    A target's argument that its config file leaves out (`trainer.max_steps=200`) gets the `+` Hydra
    asks for. For train: point a resumed run at its own folder and vet the resume; then validate the overrides
    (commands with Hydra flags, -m, --cfg, ..., are validated per job instead); then claim a run folder
    named on the command line, so a second process cannot write into it.
    """
    from rnnlm.config.check import plain_target_keys, validate_overrides

    try:
        args = sys.argv[1:] = plain_target_keys(config_name, CONF_DIR, sys.argv[1:])
        if config_name == "train":
            from rnnlm.training.resume import resume_argv
            from rnnlm.training.run_folder import rank_argv

            args = sys.argv[1:] = rank_argv(resume_argv(args))
        if not any(a.startswith("-") for a in args):
            validate_overrides(config_name, CONF_DIR, args)
        if config_name == "train":
            claim_folders(args)
    except UserError as err:
        if os.environ.get("RNNLM_DEBUG"):
            traceback.print_exc()
        else:
            print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)


def claim_folders(args: list[str]) -> None:
    """Lock the run (or sweep) folder named by hydra.run.dir (hydra.sweep.dir with -m) for this process;
    a new run refuses a folder that already holds one. DDP ranks > 0 run inside rank 0's folder, so
    ranks started on several nodes (torchrun) must all name it."""
    from rnnlm.training import run_folder
    from rnnlm.training.resume import resume_target

    run_folder.check_one_folder(args)
    if run_folder.launch_rank() != 0:
        return
    multirun = any(a in ("-m", "--multirun") for a in args)
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    named = [a.split("=", 1)[1] for a in args if a.startswith(key)]
    if not named or any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):
        return  # a folder of its own (a timestamp), or --cfg / --help: nothing is run
    folder = _resolved_folder(named[-1])
    if folder is None:
        return  # named with ${now:...}: known only inside Hydra; train() claims it there
    holder = run_folder.owner(folder)
    if holder is not None:  # asked first: a refused command writes nothing into the folder
        raise run_folder.FolderInUse(
            f"run folder {folder} is in use by {run_folder.describe_owner(holder)}: wait for that run "
            "to end (or stop it), or give this one a folder of its own (leave out hydra.run.dir)"
        )
    if multirun:
        jobs = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        taken = sorted(p.name for p in jobs if run_folder.holds_a_run(p))
        if taken or (folder / "multirun.yaml").exists():
            raise UserError(
                f"sweep folder {folder} already holds the jobs of a sweep ({', '.join(taken[:5])}): "
                "give this sweep a folder of its own (leave out hydra.sweep.dir, or name an empty folder)"
            )
    elif resume_target(args) is None:
        run_folder.refuse_if_taken(folder)
    run_folder.lock(folder)


def _resolved_folder(value: str) -> Path | None:
    """A folder as Hydra will resolve it: `${oc.env:...}` and the like resolved now; None for a
    `${now:...}` or `${hydra:...}` one, which only Hydra can resolve."""
    if "${" in value:
        if "${now:" in value or "${hydra:" in value:
            return None
        from omegaconf import OmegaConf

        try:
            value = str(OmegaConf.create({"dir": value}).dir)
        except OmegaConfBaseException:
            return None
    return Path(value).expanduser().resolve()


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
    from rnnlm.evaluate_translation import evaluate_translation
    from rnnlm.inference.translator import is_translation

    if is_translation(cfg.ckpt_path):
        return evaluate_translation(cfg)
    return evaluate(cfg)


def _generate(cfg: DictConfig) -> list[str]:
    from rnnlm.generate import generate

    return generate(cfg)


def _translate(cfg: DictConfig) -> list[str]:
    from rnnlm.translate import translate

    return translate(cfg)


def _search(cfg: DictConfig) -> list:
    from rnnlm.applications.search import search

    return search(cfg)


def _rank(cfg: DictConfig) -> list:
    from rnnlm.applications.rank import rank

    return rank(cfg)


def _export(cfg: DictConfig) -> dict:
    from rnnlm.export.command import export

    return export(cfg)


def _export_main() -> Any:
    """`rnnlm-export hub|onnx key=value ...`: the first word is the format (format=hub). The formats
    come from schema, so a refused command still loads no torch."""
    from rnnlm.schema import EXPORT_FORMATS

    if len(sys.argv) > 1 and sys.argv[1] in EXPORT_FORMATS:
        sys.argv[1] = f"format={sys.argv[1]}"
    return hydra_entry(_export, "export")()


def _serve(cfg: DictConfig) -> None:
    from rnnlm.serve.command import serve

    serve(cfg)


train_cli = hydra_entry(_train, "train")
eval_cli = hydra_entry(_evaluate, "eval")
generate_cli = hydra_entry(_generate, "generate")
translate_cli = hydra_entry(_translate, "translate")
search_cli = hydra_entry(_search, "search")
rank_cli = hydra_entry(_rank, "rank")
export_cli = _export_main
serve_cli = hydra_entry(_serve, "serve")
