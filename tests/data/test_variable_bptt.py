"""Variable-length BPTT: the window lengths, their layout per epoch, resume inside an epoch, the lr scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_overrides, train_in_process
from rnnlm.data.layout import variable_spans


# ==================================================================================================
# Variable-length BPTT
# ==================================================================================================
def test_variable_spans_follow_awd_lstm() -> None:
    spans = variable_spans(100_000, 70, np.random.default_rng(0))
    starts = [s for s, _ in spans]
    lengths = [n for _, n in spans]
    assert starts == list(np.cumsum([0, *lengths[:-1]]))  # contiguous
    assert sum(lengths) == 100_000
    assert min(lengths[:-1]) >= 5
    assert 0.95 * 70 * 0.97 < np.mean(lengths) < 70  # 0.95 * 70 + 0.05 * 35 = 68.25 expected
    assert sum(n < 50 for n in lengths) / len(lengths) == pytest.approx(
        0.05, abs=0.01
    )  # the bptt/2 draws
    assert spans == variable_spans(100_000, 70, np.random.default_rng(0))


def test_variable_bptt_windows_per_epoch_and_fixed_validation(corpus_dir: Path) -> None:
    from rnnlm.data import LMDataModule

    dm = LMDataModule(
        path=str(corpus_dir), tokenizer="word", batch_size=4, bptt=8, variable_bptt=True
    )
    dm.setup()
    e0, e0_again, e1 = dm.train_windows(0), dm.train_windows(0), dm.train_windows(1)
    assert e0.spans == e0_again.spans and e0.spans != e1.spans
    data = dm.windows["train"].data
    x_prev = None
    for i in range(len(e0)):
        x, y = e0[i]
        assert torch.equal(y[:, :-1], x[:, 1:])
        if x_prev is not None:
            assert e0.spans[i][0] == e0.spans[i - 1][0] + e0.spans[i - 1][1]
        x_prev = x
    assert sum(n for _, n in e0.spans) == data.size(1) - 1
    assert {dm.windows["valid"][i][0].size(1) for i in range(len(dm.windows["valid"]) - 1)} == {8}


def test_resumed_epoch_starts_at_the_window_reached_in_the_loader_iterated(
    corpus_dir: Path,
) -> None:
    """Resuming mid-epoch E: Lightning builds and starts iterating the training loader once before the
    loop state is restored (epoch 0's windows) and, with variable-length windows, again for epoch E.
    Only the pass over epoch E's windows skips the windows done; later passes start at 0."""
    from types import SimpleNamespace

    from rnnlm.data import LMDataModule

    dm = LMDataModule(
        path=str(corpus_dir), tokenizer="word", batch_size=4, bptt=8, variable_bptt=True
    )
    dm.setup()
    dm.trainer = SimpleNamespace(current_epoch=1, global_rank=0, world_size=1)
    fresh = [x for x, _ in dm.train_dataloader()]  # epoch 1 from its start
    dm.resume_train_at(3, epoch=1)
    dm.trainer.current_epoch = 0  # not restored yet
    assert len(list(dm.train_dataloader())) == len(dm.train_windows(0))  # epoch 0's, whole
    dm.trainer.current_epoch = 1  # the loop state restored: epoch 1, 3 windows done
    resumed = [x for x, _ in dm.train_dataloader()]
    assert len(resumed) == len(fresh) - 3
    assert all(torch.equal(a, b) for a, b in zip(resumed, fresh[3:], strict=True))
    assert len(list(dm.train_dataloader())) == len(fresh)  # the next epoch starts at 0


def test_variable_bptt_scales_the_step_learning_rate(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnlm.training import module as module_mod

    seen: list[tuple[int, float]] = []
    lengths: list[int] = []
    real_start = module_mod.LMModule.on_train_batch_start
    real_step = torch.optim.SGD.step

    def on_start(self, batch, batch_idx):  # noqa: ANN001
        lengths.append(batch[0].size(1))
        return real_start(self, batch, batch_idx)

    def step(self, closure=None):  # noqa: ANN001
        seen.append((lengths[-1], self.param_groups[0]["lr"]))
        return real_step(self, closure)

    monkeypatch.setattr(module_mod.LMModule, "on_train_batch_start", on_start)
    monkeypatch.setattr(torch.optim.SGD, "step", step)
    train_in_process(
        [
            *tiny_overrides(corpus_dir),
            "data.tokenizer=word",
            "optim=sgd",
            "optim.lr=0.5",
            "scheduler=none",
            "data.variable_bptt=true",
            "data.bptt=12",
            "trainer.limit_train_batches=null",
            "test=false",
        ],
        tmp_path / "run",
    )
    assert len({n for n, _ in seen}) > 1  # the lengths vary
    for n, lr in seen:
        assert lr == pytest.approx(0.5 * n / 12)
