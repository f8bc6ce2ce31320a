"""The column layout of the token stream: batchify, windows, check_fits, shard (and the DataModule)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import write_corpus
from rnnlm.data import LMDataModule, Windows, batchify, shard, windows
from rnnlm.data.layout import LayoutError, check_fits
from rnnlm.errors import UserError


def test_batchify_cuts_contiguous_columns_and_drops_the_remainder() -> None:
    data = batchify(torch.arange(26), 4)  # 26 // 4 = 6 per column, 2 dropped
    assert data.shape == (4, 6)
    assert data.tolist() == [
        [0, 1, 2, 3, 4, 5],
        [6, 7, 8, 9, 10, 11],
        [12, 13, 14, 15, 16, 17],
        [18, 19, 20, 21, 22, 23],
    ]


def test_windows_shift_targets_by_one_and_last_window_is_shorter() -> None:
    data = batchify(torch.arange(24), 4)  # (4, 6)
    w = Windows(data, bptt=2)
    # 5 target positions per column: windows of 2, 2 and 1.
    assert len(w) == 3
    x0, y0 = w[0]
    assert x0.tolist() == [[0, 1], [6, 7], [12, 13], [18, 19]]
    assert y0.tolist() == [[1, 2], [7, 8], [13, 14], [19, 20]]
    x1, y1 = w[1]
    assert x1.tolist() == [[2, 3], [8, 9], [14, 15], [20, 21]]
    assert y1.tolist() == [[3, 4], [9, 10], [15, 16], [21, 22]]
    x2, y2 = w[2]  # the last window is shorter
    assert x2.shape == y2.shape == (4, 1)
    assert x2.tolist() == [[4], [10], [16], [22]]
    assert y2.tolist() == [[5], [11], [17], [23]]
    with pytest.raises(IndexError):
        w[3]


@pytest.mark.parametrize(
    ("n", "batch_size", "bptt"), [(24, 4, 2), (100, 3, 7), (50, 5, 9), (37, 2, 1)]
)
def test_windows_cover_every_target_exactly_once_in_order(
    n: int, batch_size: int, bptt: int
) -> None:
    w = windows(torch.arange(n), batch_size, bptt)
    xs = torch.cat([w[i][0] for i in range(len(w))], dim=1)
    ys = torch.cat([w[i][1] for i in range(len(w))], dim=1)
    data = batchify(torch.arange(n), batch_size)
    assert torch.equal(xs, data[:, :-1])
    assert torch.equal(ys, data[:, 1:])
    assert torch.equal(ys, xs + 1)  # the stream is arange: each target is its input + 1
    assert w.num_tokens == ys.numel() == batch_size * (n // batch_size - 1)
    assert all(w[i][0].size(1) == bptt for i in range(len(w) - 1))
    assert 1 <= w[len(w) - 1][0].size(1) <= bptt


def test_windows_are_long_tensors() -> None:
    w = windows(torch.arange(40, dtype=torch.int32), 2, 4)
    x, y = w[0]
    assert x.dtype == y.dtype == torch.long


def test_check_fits_error_names_the_sizes() -> None:
    check_fits(36, 4, 8, "valid")  # exactly enough: no error
    with pytest.raises(LayoutError) as info:
        check_fits(35, 4, 8, "valid")
    msg = str(info.value)
    assert isinstance(info.value, UserError)
    for part in ("valid", "35", "batch_size", "bptt", "4", "8", "36"):
        assert part in msg, (part, msg)
    with pytest.raises(LayoutError, match="test split has 10 tokens"):
        windows(torch.arange(10), 4, 8, split="test")


def test_bptt_below_one_is_an_error() -> None:
    with pytest.raises(LayoutError, match="bptt"):
        Windows(batchify(torch.arange(10), 2), 0)


SHARDS = [(10, 2, 1), (11, 2, 1), (10, 3, 1), (7, 7, 1), (1000, 4, 1), (669, 2, 4), (101, 3, 5)]


@pytest.mark.parametrize(("n", "world", "batch"), SHARDS)
def test_shard_gives_contiguous_equal_pieces(n: int, world: int, batch: int) -> None:
    ids = torch.arange(n)
    pieces = [shard(ids, r, world, batch) for r in range(world)]
    size = n // (world * batch) * batch
    assert all(p.numel() == size for p in pieces)
    # Contiguous and in rank order: together they are the stream's first world * size tokens.
    assert torch.equal(torch.cat(pieces), ids[: world * size])
    for r, p in enumerate(pieces):
        assert p.tolist() == list(range(r * size, (r + 1) * size))


@pytest.mark.parametrize(("n", "world", "batch"), SHARDS)
def test_ranks_read_the_columns_of_one_process_of_the_global_batch(
    n: int, world: int, batch: int
) -> None:
    """W ranks of batch B (one node or several) read what one process of batch W*B reads."""
    ids = torch.arange(n)
    ranks = [batchify(shard(ids, r, world, batch), batch) for r in range(world)]
    assert torch.equal(torch.cat(ranks), batchify(ids, world * batch))


def test_datamodule_ranks_read_different_contiguous_shards(tmp_path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"train": 60, "valid": 20, "test": 20})
    per_rank = []
    for rank in range(2):
        dm = LMDataModule(
            path=str(corpus), tokenizer="char", batch_size=2, bptt=4, cache_dir=str(tmp_path / "c")
        )
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        dm.setup("fit")
        per_rank.append(dm)
    for split in ("train", "valid", "test"):
        stream = torch.from_numpy(per_rank[0].ids[split].astype("int64"))
        whole = batchify(stream, 2 * 2)  # one process with the global batch: 2 ranks x 2 columns
        for rank, dm in enumerate(per_rank):
            w = dm.windows[split]
            assert torch.equal(w.data, whole[rank * 2 : (rank + 1) * 2])
        assert len(per_rank[0].windows[split]) == len(per_rank[1].windows[split])
