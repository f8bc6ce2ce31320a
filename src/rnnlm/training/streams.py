"""The carried state of the token streams: truncated BPTT by hand, and its exact resume.

Lightning 2 has no truncated BPTT: the hidden state is carried from one window to the next, detached
each step, one state per stage, reset at the start of each epoch. A checkpoint keeps where the training
stream stands (windows done, its carried state, the RNG that draws dropout masks), so a mid-epoch
checkpoint resumes at the exact window; under DDP it keeps every rank's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor

from rnnlm.models import detach_hidden

STAGES = ("train", "val", "test")


class Streams:
    """One carried hidden state per stage, the training epoch's position, and a pending resume."""

    def __init__(self) -> None:
        self.hidden: dict[str, Any] = dict.fromkeys(STAGES)
        self.windows_done = 0  # training windows done in the current epoch
        self.resume_state: dict[str, Any] | None = (
            None  # restored from a checkpoint, not yet applied
        )

    def carry(self, stage: str, hidden: Any) -> None:
        self.hidden[stage] = detach_hidden(hidden)

    def reset(self, stage: str) -> None:
        """A new pass over the split (an epoch start), unless a training resume is pending."""
        if stage == "train":
            if self.resume_state is not None:
                return
            self.windows_done = 0
        self.hidden[stage] = None

    def apply_resume(self, rank: int, world_size: int, device: torch.device) -> None:
        """Continue mid-epoch from a checkpoint: the stream's carried state and dropout masks exactly
        where the interrupted run stopped. (The data loaders draw their seeds from their own
        generators, so nothing else consumes the global RNG in between.)

        Under DDP the checkpoint holds every rank's state ("ranks"). Resumed on another number of ranks
        (or from a checkpoint without them), rank 0 takes the saved state and the other ranks, whose
        shards have changed, restart their columns from a zero state as at an epoch start. Saved on the
        CPU: moved to this device.
        """
        state = self.resume_state
        if state is None:
            return
        ranks = state.get("ranks")
        if ranks is not None and len(ranks) == world_size:
            state = {**state, **ranks[rank]}
        elif rank > 0:
            state = {**state, "hidden": None}
        self.hidden["train"] = move_data_to_device(state["hidden"], device)
        self.windows_done = state["windows_done"]
        if state["rng"] is not None:
            torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        self.resume_state = None

    def checkpoint_state(
        self,
        epoch_done: bool,
        device: torch.device,
        world_size: int,
        all_gather: Callable[[Tensor], Tensor],
    ) -> dict[str, Any]:
        """Where the training stream stands, for checkpoint["rnnlm"] (`epoch_done`: the next epoch
        starts afresh, so nothing is carried)."""
        windows_done, hidden = (
            (0, None) if epoch_done else (self.windows_done, self.hidden["train"])
        )
        rng = torch.get_rng_state()
        # dropout masks on a GPU come from its own generator
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        state: dict[str, Any] = {
            "windows_done": windows_done,
            "train_hidden": hidden,
            "rng": rng,
            "cuda_rng": cuda_rng,
        }
        if world_size > 1:
            # Under DDP each rank carries the state of its own shard and draws its own dropout masks:
            # keep every rank's (every rank saves: Lightning dumps the checkpoint on all of them).
            state["ranks"] = gather_ranks(
                {"hidden": hidden, "rng": rng, "cuda_rng": cuda_rng}, world_size, device, all_gather
            )
        return state

    def load_checkpoint_state(self, meta: dict[str, Any]) -> int:
        """Keep a checkpoint's stream position to apply at the first training batch; returns the
        windows done, where the data module restarts the epoch's loader."""
        self.resume_state = {
            "windows_done": meta.get("windows_done", 0),
            "hidden": meta.get("train_hidden"),
            "rng": meta.get("rng"),
            "cuda_rng": meta.get("cuda_rng"),
            "ranks": meta.get("ranks"),
        }
        return self.resume_state["windows_done"]


def gather_ranks(
    state: dict[str, Any],
    world_size: int,
    device: torch.device,
    all_gather: Callable[[Tensor], Tensor],
) -> list[dict[str, Any]]:
    """Every rank's `state` (tensors, tuples of tensors or None, the same shapes on all ranks), on the
    CPU, as a list indexed by rank."""
    out: list[dict[str, Any]] = [{} for _ in range(world_size)]
    for key, value in state.items():
        if value is None:
            for own in out:
                own[key] = None
            continue
        parts = value if isinstance(value, tuple) else (value,)
        # (world, ...) per tensor; the collective runs on this rank's device (NCCL needs CUDA)
        gathered = [all_gather(t.to(device)).cpu() for t in parts]
        for rank, own in enumerate(out):
            # a copy: a view would save every rank's rows with each rank
            mine = tuple(g[rank].clone() for g in gathered)
            own[key] = mine if isinstance(value, tuple) else mine[0]
    return out
