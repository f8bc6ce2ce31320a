"""Before a run starts: its TensorBoard name, the launch check (no subprocess DDP inside a multirun),
the overrides it was started with, the hyperparameters TensorBoard shows, the allocator setting."""

from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from rnnlm.config import in_multirun
from rnnlm.errors import UserError
from rnnlm.training.run_folder import launch_world

# Overrides that say where or how to run, not what is trained: left out of TensorBoard run names.
_NOT_IN_RUN_NAME = (
    "hydra.",
    "paths.",
    "resume",
    "trainer",
    "callbacks",
    "logger",
    "debug",
    "compile",
)


def run_name(overrides: list[str]) -> str:
    """TensorBoard run name from the job's overrides, e.g. `model=lstm,optim=sgd`."""
    keep = [o.lstrip("+~") for o in overrides if not o.lstrip("+~").startswith(_NOT_IN_RUN_NAME)]
    name = ",".join(sorted(keep)) or "default"
    return re.sub(r"[^\w=,.+\-]", "_", name)[:200]


def run_overrides(out_dir: Path) -> list[str]:
    """The overrides the run was started with (read back from its folder when it is resumed)."""
    saved = out_dir / ".hydra" / "overrides.yaml"
    if saved.is_file():
        return [str(o) for o in OmegaConf.load(saved)]
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def check_launch(cfg: DictConfig) -> None:
    """Refuse subprocess DDP inside a Hydra multirun: every rank would re-run the whole sweep.

    Allowed in a task that srun started (hydra/launcher=slurm, tasks_per_node = GPUs): SLURM starts
    one process per rank, each runs this one job, and Lightning takes the ranks from SLURM. Ranks that
    torchrun started are checked by `check_torchrun`.
    """
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        check_torchrun(cfg)
        return
    strategy = str(cfg.trainer.get("strategy", "auto"))
    what = f"trainer.strategy={strategy}"
    if strategy == "auto":  # Lightning picks subprocess DDP for more than one device or node
        devices = _device_count(cfg.trainer.get("devices", "auto"), cfg.trainer.get("accelerator"))
        nodes = int(cfg.trainer.get("num_nodes", 1) or 1)
        if devices > 1 or nodes > 1:
            strategy = "ddp"
            what = f"trainer.devices={cfg.trainer.get('devices')} (Lightning then starts DDP processes)"
    subprocess_ranks = strategy.startswith(("ddp", "fsdp", "deepspeed")) and "spawn" not in strategy
    if in_multirun() and subprocess_ranks and not SLURMEnvironment.detect():
        raise UserError(
            f"{what} inside a multirun (-m) would make every rank re-run the whole "
            "sweep: run multi-process jobs one at a time without -m, or use trainer.strategy=ddp_spawn, "
            "or hydra/launcher=slurm so SLURM starts the ranks"
        )


def check_torchrun(cfg: DictConfig) -> None:
    """Ranks that torchrun started: one job each, and the trainer asks for the ranks torchrun made.

    Lightning reads the ranks from torchrun and the data module shards by the global rank, so
    `trainer.num_nodes` x `trainer.devices` must be torchrun's `--nnodes` x `--nproc-per-node`.
    """
    if in_multirun():
        raise UserError(
            "a multirun (-m) under torchrun would run the whole sweep on every rank: start one torchrun "
            "command per job, without -m (or use hydra/launcher=slurm so SLURM starts the ranks)"
        )
    world = launch_world()
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    devices = _device_count(cfg.trainer.get("devices", "auto"), cfg.trainer.get("accelerator"))
    nodes = int(cfg.trainer.get("num_nodes", 1) or 1)
    if (nodes, devices) != (world // per_node, per_node):
        raise UserError(
            f"torchrun started {world} ranks ({per_node} per node) but trainer.num_nodes={nodes} "
            f"x trainer.devices={devices} asks for {nodes * devices}: set trainer.num_nodes to "
            "torchrun's --nnodes and trainer.devices to its --nproc-per-node"
        )


def _device_count(devices: Any, accelerator: Any) -> int:
    """How many devices `trainer.devices` asks for ('auto' and -1: every GPU, if GPUs are used)."""
    if isinstance(devices, list | ListConfig):
        return len(devices)
    try:
        if int(devices) >= 0:
            return int(devices)
    except (TypeError, ValueError):  # "auto", None, or GPU ids as "0,1"
        pass
    if str(accelerator) == "cpu":
        return 1
    import torch

    return max(torch.cuda.device_count(), 1)


def instantiate_group(group: DictConfig | None, **kwargs: Any) -> list[Any]:
    """Each `_target_` entry of a group like `callbacks:` or `logger:`, in order."""
    if not group:
        return []
    return [instantiate(c, **kwargs) for c in group.values() if c is not None and "_target_" in c]


# Where a run keeps or checks its files, not what it trains: left out of the HPARAMS tab.
NOT_HPARAMS = {"data": ("cache_dir", "url", "sha256", "encoding_errors")}


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The settings that describe the experiment (data, model, optimiser, schedule, seed) as flat
    scalars for TensorBoard's HPARAMS tab."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    keep = {
        k: resolved[k] for k in ("data", "model", "optim", "scheduler", "seed") if k in resolved
    }
    for node, keys in NOT_HPARAMS.items():
        if isinstance(keep.get(node), dict):
            keep[node] = {k: v for k, v in keep[node].items() if k not in keys}
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "_target_":
                    walk(f"{prefix}{k}/" if prefix or k else k, v)
        else:
            flat[prefix.rstrip("/")] = (
                node if isinstance(node, int | float | str | bool) else str(node)
            )

    walk("", keep)
    return flat


def keep_large_blocks_in_heap() -> None:
    """Let glibc reuse freed blocks of up to 64 MB instead of unmapping them (Linux only).

    By default glibc hands large freed blocks back to the kernel and the next step's allocation of the
    same size page-faults them in again, zero-filled: for a word-level model that is every step's fresh
    output-layer gradient (docs/how-it-works.md, section 7). Larger blocks stay mmapped: serving them
    from the heap too was measured 10% faster for a 2048-token window of one QRNN layer but raised
    the peak resident memory 1.75x (2.5x for a Hawk block), as freed blocks of other sizes fragment it.
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
