"""The Transformer baseline: context carried across windows, and a run that trains and generates."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from conftest import tiny_overrides, train_in_process
from rnnlm.models import TransformerLM

V = 23


def _x(b: int, t: int) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(1))


# ==================================================================================================
# Transformer baseline
# ==================================================================================================
def test_transformer_context_carries_across_windows() -> None:
    torch.manual_seed(0)
    model = TransformerLM(
        V, embedding_dim=16, num_layers=2, num_heads=2, max_len=32, memory=8
    ).eval()
    x = _x(2, 16)
    with torch.no_grad():
        full, _ = model(x)
        first, ctx = model(x[:, :8])
        second, _ = model(x[:, 8:], ctx)
        fresh, _ = model(x[:, 8:])
        long, _ = model(_x(2, 100))  # longer than max_len: read in chunks
    torch.testing.assert_close(torch.cat([first, second], 1), full)
    assert not torch.allclose(fresh, full[:, 8:])
    assert long.shape == (2, 100, V)


def test_transformer_trains_and_generates(corpus_dir: Path, tmp_path: Path) -> None:
    from rnnlm.inference.lm import LanguageModel

    out = tmp_path / "run"
    sizes = [o for o in tiny_overrides(corpus_dir) if not o.startswith("model.hidden_dim")]
    ppl = train_in_process(
        [
            *sizes,
            "data.tokenizer=word",
            "model=transformer",
            "model.num_layers=1",
            "model.num_heads=2",
            "model.max_len=16",
            "model.memory=8",
        ],
        out,
    )
    assert math.isfinite(ppl)
    lm = LanguageModel.load(out / "checkpoints" / "best.ckpt")
    assert lm.generate("the cat", max_new_tokens=20, seed=0).startswith("the cat")
