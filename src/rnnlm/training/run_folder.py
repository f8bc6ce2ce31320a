"""A run folder belongs to one process at a time, and holds one run.

The lock is an `flock` on `<run>/.lock`, taken before anything is written there (for a folder named on
the command line, before Hydra starts) and held for the life of the process. The kernel drops it when
the process ends, however it ends, so a crashed or killed run never leaves it stuck. The file also
says who holds it (pid, host, command, start), for the message a second process gets.

Imports nothing heavy: the checks run before torch and Lightning are loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from rnnlm.errors import RunError, UserError

LOCK_FILE = ".lock"
RESULT_FILE = "result.json"
# Marks of a run (or a sweep) that has started: another run must not write over them.
RUN_MARKS = (RESULT_FILE, "checkpoints", "tensorboard", "multirun.yaml")

_held: dict[Path, int] = {}  # run folder -> descriptor of its lock, for the life of the process


class FolderInUse(UserError):
    """Another process holds the run folder's lock."""


def launch_rank() -> int:
    """This process's rank as its launcher set it (Lightning's DDP children, torchrun, SLURM), or 0.

    Read from the environment, so it is known before Lightning starts: only rank 0 owns the folder.
    """
    rank = 0
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        try:
            rank = max(rank, int(os.environ.get(var, "0") or 0))
        except ValueError:
            continue
    return rank


def launch_world() -> int:
    """How many ranks the launcher started in all (torchrun and Lightning's DDP children set
    WORLD_SIZE: nodes x processes per node), or 1."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1") or 1), 1)
    except ValueError:
        return 1


def check_one_folder(args: list[str]) -> None:
    """Refuse ranks that would each compose a folder of their own.

    Every rank started by torchrun, and every node of a `trainer.num_nodes` run, runs Hydra on its own:
    without a named `hydra.run.dir` each would write into a timestamp of its own, and the ranks above 0
    would leave their logs in folders that rank 0 never owns.
    """
    if any(a.startswith("-") for a in args) or any(a.startswith("hydra.run.dir=") for a in args):
        return  # -m, --cfg, --help: not one run; or the folder is named
    world, nodes = launch_world(), _num_nodes(args)
    if world > 1:
        who = f"this process is rank {launch_rank()} of WORLD_SIZE={world} (torchrun)"
    elif nodes > 1:
        who = f"trainer.num_nodes={nodes} runs one command per machine"
    else:
        return
    raise UserError(
        f"{who} but names no hydra.run.dir, so every node would write into a folder of its own: give "
        "every node's command the same hydra.run.dir=<folder on a filesystem they share>"
    )


def _num_nodes(args: list[str]) -> int:
    for arg in reversed(args):
        key, _, value = arg.lstrip("+").partition("=")
        if key == "trainer.num_nodes":
            try:
                return int(value)
            except ValueError:
                return 1  # not a number: the config check names it
    return 1


def rank_argv(args: list[str]) -> list[str]:
    """A rank above 0 started by an outside launcher (torchrun, srun) logs to `train_rank_<r>.log` and
    leaves `.hydra/` to rank 0, in the run folder rank 0 owns (Lightning's own DDP children get the
    same from Lightning: `train_ddp_process_<r>.log`)."""
    rank = launch_rank()
    if rank == 0 or any(a.startswith("-") for a in args):
        return args
    extra = [f"hydra.job.name=train_rank_{rank}", "hydra.output_subdir=null"]
    keys = {a.split("=", 1)[0] for a in args}
    return [*args, *(e for e in extra if e.split("=", 1)[0] not in keys)]


def owner(folder: str | Path) -> dict | None:
    """Who holds `folder`'s lock now (pid, host, command, started), or None if nobody does."""
    path = Path(folder) / LOCK_FILE
    if Path(folder).resolve() in _held:
        return _read_owner(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_owner(path) or {"pid": "?"}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def describe_owner(info: dict) -> str:
    started = info.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if started else ""
    command = f" ({info['command']})" if info.get("command") else ""
    host = f" on {info['host']}" if info.get("host") else ""
    return f"process {info.get('pid', '?')}{host}{command}{when}"


def lock(folder: str | Path) -> None:
    """Take `folder`'s lock for the rest of this process (again: a no-op), or refuse in one line."""
    folder = Path(folder).resolve()
    if folder in _held:
        return
    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RunError(
            f"cannot write to the run folder {folder} ({err.strerror or err}): free space there or "
            "make it writable, or give the run another folder"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        info = _read_owner(path) or {}
        raise FolderInUse(
            f"run folder {folder} is in use by {describe_owner(info)}: wait for that run to end (or "
            "stop it), or give this one a folder of its own (leave out hydra.run.dir)"
        ) from None
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command_line(300),
        "started": time.time(),
    }
    _held[folder] = fd
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
    except OSError:  # a full disk: the lock holds all the same, only the owner's note is missing
        pass


def command_line(limit: int = 1000) -> str:
    """This process's command, as a user would type it again (cut to `limit` characters, marked)."""
    line = " ".join(["python", *sys.argv])
    return line if len(line) <= limit else line[: limit - 3] + "..."


def unlock(folder: str | Path) -> None:
    """Give the lock back (a job of an in-process sweep is over); closing the descriptor drops it."""
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)


def holds_a_run(folder: str | Path) -> bool:
    """Whether a run has started in `folder` (its record, checkpoints or TensorBoard run are there)."""
    return any((Path(folder) / mark).exists() for mark in RUN_MARKS)


def refuse_if_taken(folder: str | Path) -> None:
    """A new run must not share a folder with another run, finished or not."""
    folder = Path(folder)
    if holds_a_run(folder):
        status = ""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            status = json.loads((folder / RESULT_FILE).read_text()).get("status") or ""
        held = f" ({status})" if status else ""
        raise UserError(
            f"run folder {folder} already holds a run{held}: resume it with resume={folder}, or give the "
            "new run a folder of its own (leave out hydra.run.dir, or name an empty folder)"
        )
