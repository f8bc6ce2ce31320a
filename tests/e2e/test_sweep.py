"""Sweeps: the Optuna search (`hparams_search=optuna`), the submitit launchers (`hydra/launcher=local|slurm`)
and DDP inside a multirun when SLURM starts the ranks."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF_DIR, run_train_script

SEARCHED = {"model", "model.hidden_dim", "model.num_layers", "model.dropout", "optim.lr"}


def tiny(corpus: Path) -> list[str]:
    return [
        "data=text_files",
        f"data.path={corpus}",
        "debug=smoke",
        "model.embedding_dim=16",
        "model.hidden_dim=16",
        "data.batch_size=4",
        "data.bptt=8",
    ]


def hydra_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def job_results(sweep: Path) -> dict[str, dict]:
    return {
        p.name: json.loads((p / "result.json").read_text())
        for p in sorted(sweep.iterdir())
        if p.is_dir() and p.name.isdigit()
    }


# -- Optuna ------------------------------------------------------------------------------------------
def test_optuna_search_space_and_sampler() -> None:
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from optuna.distributions import (
        CategoricalDistribution,
        LogUniformDistribution,
        UniformDistribution,
    )

    cfg = hydra_cfg(["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert isinstance(sweeper.sampler.seed, int)
    assert sweeper.direction == "minimize" and sweeper.n_trials == 20
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.optimized_metric == "val/best_ppl"  # what train() returns
    assert set(sweeper.params) == SEARCHED

    space, fixed = create_params_from_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    assert fixed == {}
    assert isinstance(space["model"], CategoricalDistribution)
    assert set(space["model"].choices) == {"rnn", "lstm", "gru"}
    for choice in space["model"].choices:  # each is an option of the model group
        assert (CONF_DIR / "model" / f"{choice}.yaml").is_file()
    assert isinstance(space["optim.lr"], LogUniformDistribution)
    assert 0 < space["optim.lr"].low < space["optim.lr"].high < 1
    assert isinstance(space["model.dropout"], UniformDistribution)
    assert 0 <= space["model.dropout"].low < space["model.dropout"].high < 1
    assert all(n >= 1 for n in space["model.num_layers"].choices)

    # Without hparams_search the basic sweeper stays.
    assert "optuna" not in hydra_cfg([]).hydra.sweeper._target_.lower()


def test_optuna_search_writes_the_best_parameters(tmp_path: Path, corpus_dir: Path) -> None:
    sweep = tmp_path / "search"
    proc = run_train_script(
        [
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            *tiny(corpus_dir),
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = job_results(sweep)
    assert len(results) == 2
    assert all(r["status"] == "finished" for r in results.values())

    best = OmegaConf.to_container(OmegaConf.load(sweep / "optimization_results.yaml"))
    assert best["name"] == "optuna"
    # model.hidden_dim was fixed on the command line: it leaves the search space.
    assert set(best["best_params"]) == SEARCHED - {"model.hidden_dim"}
    assert best["best_params"]["model"] in {"rnn", "lstm", "gru"}
    assert best["best_value"] == pytest.approx(min(r["best_val_ppl"] for r in results.values()))
    assert math.isfinite(best["best_value"])
    # The trial with the best value ran with the best parameters.
    best_job = min(results, key=lambda k: results[k]["best_val_ppl"])
    overrides = [str(o) for o in OmegaConf.load(sweep / best_job / ".hydra" / "overrides.yaml")]
    for key, value in best["best_params"].items():
        assert f"{key}={value}" in overrides


def test_optuna_search_goes_on_after_a_failed_trial(tmp_path: Path, corpus_dir: Path) -> None:
    """A failed trial is recorded as failed in its job folder and in the study, the next trial runs,
    and the search ends with one summary of the failure (exit status 1), not a traceback."""
    sweep = tmp_path / "search"
    fixed = ["model=gru", "model.num_layers=1", "model.dropout=0.1", "optim.lr=0.003"]
    proc = run_train_script(
        [
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            *[o for o in tiny(corpus_dir) if not o.startswith("data.batch_size=")],
            *fixed,
            # seed 8 proposes 100000 first (longer than the corpus: refused), then 4
            "data.batch_size=choice(4,100000)",
            "hydra.sweeper.sampler.seed=8",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    results = job_results(sweep)
    assert [r["status"] for r in results.values()] == ["failed", "finished"]
    assert "fewer than batch_size" in results["0"]["error"]
    summary = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert len(summary) == 1 and summary[0].startswith("error: 1 of 2 jobs did not finish: job 0")
    best = OmegaConf.to_container(OmegaConf.load(sweep / "optimization_results.yaml"))
    assert best["best_params"] == {"data.batch_size": 4}
    assert best["best_value"] == pytest.approx(results["1"]["best_val_ppl"])


# -- launchers ---------------------------------------------------------------------------------------
@pytest.mark.slow  # two Python processes importing torch and Lightning at once: 40-100 s on 2 cores
def test_local_launcher_runs_each_job_in_its_own_process(tmp_path: Path, corpus_dir: Path) -> None:
    sweep = tmp_path / "local"
    proc = run_train_script(
        [
            "-m",
            "hydra/launcher=local",
            "model=rnn,gru",
            *tiny(corpus_dir),
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = job_results(sweep)
    assert sorted(results) == ["0", "1"]
    assert [r["status"] for r in results.values()] == ["finished", "finished"]
    assert (sweep / ".submitit").is_dir()  # went through submitit, not the basic launcher


def test_slurm_launcher_starts_one_rank_per_gpu(tmp_path: Path, monkeypatch) -> None:
    cfg = hydra_cfg(
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=4",
            f"hydra.sweep.dir={tmp_path}",
            "trainer=ddp",
        ]
    )
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    launcher = instantiate(cfg.hydra.launcher)
    params = launcher.params
    assert params["tasks_per_node"] == params["gpus_per_node"] == 4
    assert params["partition"] == "gpu" and params["nodes"] == 1
    for key in ("cpus_per_task", "mem_gb", "timeout_min"):
        assert isinstance(params[key], int) and params[key] > 0, key

    # The sbatch script submitit would submit (a stand-in `srun` on PATH: no cluster here). Built like
    # the plugin's launch() does; _make_submission_file_text is submitit's, not public.
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{
            k if k in base else f"slurm_{k}": v
            for k, v in params.items()
            if k not in {"submitit_folder", "max_num_timeout"}
        }
    )
    sbatch = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "u")
    assert "#SBATCH --ntasks-per-node=4" in sbatch
    assert "#SBATCH --gpus-per-node=4" in sbatch
    assert "#SBATCH --partition=gpu" in sbatch
    assert "\nsrun " in sbatch

    local = hydra_cfg(["hydra/launcher=local"]).hydra.launcher
    assert local._target_.endswith("LocalLauncher") and local.tasks_per_node == 1


# -- DDP inside a multirun ------------------------------------------------------------------------
SLURM_VARS = ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_JOB_NAME", "SLURM_PROCID")


def test_ddp_in_a_multirun_is_allowed_only_where_slurm_starts_the_ranks(monkeypatch) -> None:
    from rnnlm.errors import UserError
    from rnnlm.training import launch

    monkeypatch.setattr(launch, "in_multirun", lambda: True)
    for var in SLURM_VARS:
        monkeypatch.delenv(var, raising=False)
    ddp = OmegaConf.create({"trainer": {"strategy": "ddp"}})

    with pytest.raises(UserError, match="re-run the whole sweep"):
        launch.check_launch(ddp)  # the basic or local launcher: Lightning would start the ranks
    launch.check_launch(OmegaConf.create({"trainer": {"strategy": "ddp_spawn"}}))
    launch.check_launch(OmegaConf.create({"trainer": {"strategy": "auto"}}))

    # A task started by srun with 4 tasks per node (hydra/launcher=slurm, tasks_per_node=4).
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_PROCID", "0")
    launch.check_launch(ddp)

    # An interactive SLURM shell (srun --pty bash) does not start ranks: still refused.
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")
    with pytest.raises(UserError):
        launch.check_launch(ddp)
