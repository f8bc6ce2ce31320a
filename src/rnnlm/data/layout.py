"""The classic language-model data layout (pytorch/examples `word_language_model`).

A split is one long stream of token ids. `batchify` cuts it into B contiguous columns; training reads
the columns in windows of T = bptt tokens, left to right, so window i+1 continues window i in every
column and the hidden state can be carried across windows.

    stream:  a b c d e f g h i j k l m n o p q r s t u v w x      (N = 24)
    batchify(B=4) -> data (B, N // B):
             [[a b c d e f]
              [g h i j k l]
              [m n o p q r]
              [s t u v w x]]
    window 0 with T=2: x = data[:, 0:2] = [[a b] [g h] ...], y = data[:, 1:3] = [[b c] [h i] ...]
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnlm import schema
from rnnlm.errors import UserError


class LayoutError(UserError):
    """A split too short for the asked batch layout; the message gives the sizes."""


def check_bptt(bptt: int) -> None:
    try:
        schema.check("data", bptt=bptt)
    except ValueError as err:
        raise LayoutError(str(err)) from None


def check_fits(num_tokens: int, batch_size: int, bptt: int, split: str) -> None:
    need = batch_size * (bptt + 1)
    if num_tokens < need:
        raise LayoutError(
            f"the {split} split has {num_tokens} tokens, fewer than batch_size * (bptt + 1) = "
            f"{batch_size} * ({bptt} + 1) = {need}: lower data.batch_size or data.bptt, or use more text"
        )


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """(N,) stream -> (B, N // B): column b is the b-th contiguous piece; the remainder is dropped."""
    n = ids.numel() // batch_size
    return ids[: n * batch_size].view(batch_size, n)


def shard(ids: Tensor, rank: int, world_size: int, batch_size: int = 1) -> Tensor:
    """The rank-th of `world_size` equal contiguous pieces, so every rank gets the same batch count.

    Each piece is a whole number of `batch_size` columns, so `batchify(shard(ids, r, W, B), B)` is
    columns r*B .. r*B+B-1 of `batchify(ids, W*B)`: W ranks of batch B (on one node or several) read
    exactly what one process of batch W*B reads.
    """
    n = ids.numel() // (world_size * batch_size) * batch_size
    return ids[rank * n : (rank + 1) * n]


class Windows(Dataset):
    """Window i of a batchified split: inputs (B, T) and targets (B, T), the inputs shifted by one.

    Items are views of one tensor laid out once (int64 copies of the window when the ids are stored as
    int32, e.g. memory-mapped from the token cache); the last window may be shorter than `bptt`.
    """

    def __init__(self, data: Tensor, bptt: int) -> None:
        check_bptt(bptt)
        self.data = data  # (B, N // B)
        self.bptt = bptt

    def __len__(self) -> int:
        return math.ceil((self.data.size(1) - 1) / self.bptt)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.bptt
        seq = min(self.bptt, self.data.size(1) - 1 - start)
        return self._window(start, seq)

    def _window(self, start: int, seq: int) -> tuple[Tensor, Tensor]:
        x, y = self.data[:, start : start + seq], self.data[:, start + 1 : start + 1 + seq]
        if x.dtype != torch.long:  # ids kept narrow (int32, memory-mapped): widen one window only
            x, y = x.long(), y.long()
        return x, y

    @property
    def num_tokens(self) -> int:
        """Target tokens per pass over the split."""
        return self.data.size(0) * (self.data.size(1) - 1)


def variable_spans(num_targets: int, bptt: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(start, length) of consecutive windows covering `num_targets` steps, lengths drawn as in AWD-LSTM:
    around bptt with probability 0.95, else around bptt / 2; normal with sd 5, at least 5 (or what is left)."""
    spans: list[tuple[int, int]] = []
    i = 0
    while i < num_targets:
        mean = bptt if rng.random() < 0.95 else bptt / 2
        seq = min(max(5, int(rng.normal(mean, 5))), num_targets - i)
        spans.append((i, seq))
        i += seq
    return spans


class VariableWindows(Windows):
    """Windows of varying length (variable-length BPTT), still read in order: window i+1 continues window i.

    The lengths of one pass come from `rng` (seeded per epoch by the caller, so a resumed run reads the
    same windows).
    """

    def __init__(self, data: Tensor, bptt: int, rng: np.random.Generator) -> None:
        super().__init__(data, bptt)
        self.spans = variable_spans(data.size(1) - 1, bptt, rng)

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._window(*self.spans[i])


def windows(ids: Tensor, batch_size: int, bptt: int, split: str = "train") -> Windows:
    check_fits(ids.numel(), batch_size, bptt, split)
    return Windows(batchify(ids, batch_size), bptt)
