"""What a run prints at its end (rnnlm/training/console.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from rnnlm.training.console import print_summary


def _cfg(tmp_path, **top):  # noqa: ANN001, ANN202
    return OmegaConf.create(
        {"paths": {"output_dir": str(tmp_path)}, "data": {"tokenizer": "char"}, **top}
    )


TRAINER = SimpleNamespace(global_rank=0, checkpoint_callback=None)


def test_summary_gives_test_and_bpc(tmp_path, capsys: pytest.CaptureFixture) -> None:
    print_summary(_cfg(tmp_path), TRAINER, best_val_ppl=4.0, test_ppl=5.0)
    out = capsys.readouterr().out
    assert "test perplexity:     5.000 (best checkpoint)" in out
    assert "best val bpc:        2.0000" in out


@pytest.mark.parametrize(
    ("top", "reason"), [({"test": False}, "test=false"), ({}, "the fit did not finish")]
)
def test_summary_says_why_there_is_no_test_figure(
    tmp_path, capsys: pytest.CaptureFixture, top: dict, reason: str
) -> None:
    print_summary(_cfg(tmp_path, **top), TRAINER, best_val_ppl=4.0, test_ppl=math.nan)
    out = capsys.readouterr().out
    assert f"test perplexity:     not measured ({reason})" in out and "nan" not in out
