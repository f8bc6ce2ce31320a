"""Batches of translation pairs: length bucketing, padding, the batch dict.

Batches are dicts: `src` (B, S) and `tgt` (B, T) long, right-padded with PAD; `tgt` is the target ids
followed by EOS (no BOS: the model prepends it); `src_len` (B,); `index` (B,), the pairs' positions in
their split (0-based, counting pairs as read, before the length cap). Length bucketing sorts pools of
about 50 batches by length and shuffles the batches, so little of a batch is padding while the order
still changes every epoch (drawn from the run's seed and the epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from rnnlm.data.pair_tokenizer import EOS_ID, PAD_ID

POOL = 50  # batches sorted together when bucketing


class LengthBatches(Sampler[list[int]]):
    """Batches of indices: shuffled (training) or in order, bucketed by length if asked.

    Under DDP (`world` > 1) rank r takes batches r, r + world, ...: every rank draws the same order
    from the seed; shuffled (training) passes are cut to the same number of batches on every rank.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool,
        bucket: bool,
        seed: int = 0,
        take_start: Callable[[int], int] = lambda epoch: 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.rank, self.world = rank, world
        self.lengths, self.batch_size = lengths, batch_size
        self.shuffle, self.bucket, self.seed = shuffle, bucket, seed
        self.take_start = take_start
        self.epoch: int | None = None  # set each epoch (set_epoch); else the passes are counted
        self._passes = 0
        # Lightning calls set_epoch on a loader's `batch_sampler.sampler`, not on the batch sampler.
        self.sampler = _EpochHook(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        total = -(-len(self.lengths) // self.batch_size)
        if self.shuffle:
            return total // self.world
        return len(range(self.rank, total, self.world))

    def batches(self, epoch: int) -> list[np.ndarray]:
        n, size = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable") if self.bucket else np.arange(n)
            return [order[i : i + size] for i in range(0, n, size)]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n)
        if not self.bucket:
            return [order[i : i + size] for i in range(0, n, size)]
        out = []
        for start in range(0, n, size * POOL):
            pool = order[start : start + size * POOL]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            out.extend(pool[i : i + size] for i in range(0, len(pool), size))
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch if self.epoch is not None else self._passes
        self._passes += 1
        start = self.take_start(epoch)
        mine = self.batches(epoch)[self.rank :: self.world][: len(self)]
        for batch in mine[start:]:
            yield batch.tolist()


class _EpochHook:
    def __init__(self, owner: LengthBatches) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class PairData(Dataset):
    """The encoded pairs of one split; items are (index in the split, source ids, target ids)."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]], index: np.ndarray) -> None:
        self.src, self.tgt, self.index = src, tgt, index

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[int, list[int], list[int]]:
        return int(self.index[i]), self.src[i], self.tgt[i]


def pad(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


def collate(items: list[tuple[int, list[int], list[int]]]) -> dict[str, torch.Tensor]:
    index, src, tgt = zip(*items, strict=True)
    return {
        "src": pad(src),
        "src_len": torch.tensor([len(s) for s in src], dtype=torch.long),
        "tgt": pad([[*t, EOS_ID] for t in tgt]),
        "index": torch.tensor(index, dtype=torch.long),
    }


__all__ = ["POOL", "LengthBatches", "PairData", "collate", "pad"]
