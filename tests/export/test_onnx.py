"""ONNX export: every recurrent cell's graph carries its state like PyTorch does, ONNX Runtime's greedy
text equals PyTorch's, and the export command checks that itself."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_script
from rnnlm import LanguageModel
from rnnlm.data.tokenizers import train_tokenizer
from rnnlm.errors import UserError
from rnnlm.export.onnx import ExportError, export_onnx
from rnnlm.export.onnx_runtime import OnnxLM
from rnnlm.models import RNNLM, TransformerLM

TEXT = "to be, or not to be, that is the question:\nwhether 'tis nobler in the mind\n"
# The classic cells and minGRU in the default suite; the other parallel cells (each an export and
# 40 steps in ONNX Runtime, ~2 s) in the slow one.
CELLS = [
    "rnn",
    "lstm",
    "gru",
    "mingru",
    *(pytest.param(c, marks=pytest.mark.slow) for c in ("minlstm", "qrnn", "hawk", "mlstm")),
]


def _lm(cell: str, **extra) -> LanguageModel:
    torch.manual_seed(0)
    tok = train_tokenizer("char", TEXT)
    cfg = {"embedding_dim": 8, "hidden_dim": 16, "num_layers": 2, "cell": cell, **extra}
    model = RNNLM(vocab_size=tok.vocab_size, **cfg).eval()
    return LanguageModel(model, tok, model_config={"_target_": "rnnlm.models.RNNLM", **cfg})


@pytest.mark.parametrize("cell", CELLS)
def test_the_graph_carries_the_state_like_pytorch(cell: str, tmp_path: Path) -> None:
    lm = _lm(cell)
    written = export_onnx(lm, tmp_path / "m.onnx")
    assert written["time"] == ("dynamic" if cell in ("rnn", "lstm", "gru") else "1")
    onnx_lm = OnnxLM(written["path"])
    ids = torch.randint(0, lm.tokenizer.vocab_size, (40,))
    # PyTorch: one window; ONNX Runtime: token by token, the state fed back each time
    want, _ = lm.model(ids.view(1, -1))
    state = onnx_lm.zero_state()
    for t in range(40):
        logits, state = onnx_lm.step(ids[t].view(1, 1).numpy(), state)
        np.testing.assert_allclose(logits[0, 0], want[0, t].detach().numpy(), atol=2e-5, rtol=0)
    prompt = "to be"
    assert onnx_lm.generate(prompt, 30, temperature=0) == lm.generate(prompt, 30, temperature=0)


def test_a_classic_cell_reads_a_prompt_in_one_call(tmp_path: Path) -> None:
    lm = _lm("lstm", last_hidden_dim=8, dropout=0.1)  # layers of two widths: split layers
    onnx_lm = OnnxLM(export_onnx(lm, tmp_path / "m.onnx")["path"])
    ids = torch.randint(0, lm.tokenizer.vocab_size, (2, 25))  # batch 2, any length
    with torch.no_grad():
        want, hidden = lm.model(ids)
    logits, state = onnx_lm.step(ids.numpy(), onnx_lm.zero_state(batch=2))
    np.testing.assert_allclose(logits, want.detach().numpy(), atol=2e-5, rtol=0)
    leaves = torch.utils._pytree.tree_leaves(hidden)
    for got, ref in zip(state, leaves, strict=True):
        np.testing.assert_allclose(got, ref.numpy(), atol=2e-5, rtol=0)


def test_the_transformer_and_a_missing_extra_are_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = train_tokenizer("char", TEXT)
    model = TransformerLM(vocab_size=tok.vocab_size, embedding_dim=16, num_layers=1, num_heads=2)
    with pytest.raises(ExportError, match="recurrent models"):
        export_onnx(LanguageModel(model, tok), tmp_path / "t.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ExportError, match=r"pip install 'rnnlm\[export\]'"):
        export_onnx(_lm("gru"), tmp_path / "g.onnx")
    with pytest.raises(UserError, match="does not exist"):
        OnnxLM(tmp_path / "nothing.onnx")


def test_the_export_command_writes_and_checks_the_graph(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    graph = tmp_path / "gru.onnx"
    ckpt = tiny_checkpoint
    export = run_script("export", ["onnx", f"ckpt_path={ckpt}", f"out={graph}"])
    assert export.returncode == 0, export.stderr[-2000:]
    assert "greedy text equals PyTorch's" in export.stdout
    lm = LanguageModel.load(ckpt)
    assert OnnxLM(graph).generate("the", 20, temperature=0) == lm.generate("the", 20, temperature=0)
    bad = run_script("export", ["tar", f"ckpt_path={ckpt}", f"out={graph}"])
    assert bad.returncode != 0 and bad.stderr.startswith("error: ")
    assert len(bad.stderr.strip().splitlines()) == 1
