"""DDP on CPU (subprocesses, as the DDP launcher needs): weight drop with LSTM and GRU on two ranks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, tiny_overrides

CELLS = ["lstm", "gru"]


# ==================================================================================================
# DDP (subprocesses): weight drop with LSTM and GRU, two CPU ranks
# ==================================================================================================
@pytest.mark.slow  # DDP itself is in the default suite (test_train_e2e's shards test)
def test_weight_drop_under_ddp_cpu(corpus_dir: Path, tmp_path: Path) -> None:
    procs = {}
    for cell in CELLS:
        args = [
            "trainer=ddp_cpu",
            *tiny_overrides(corpus_dir),
            "data.tokenizer=word",
            f"model={cell}",
            "model.num_layers=2",
            "model.weight_drop=0.5",
            "model.dropout_hidden=0.2",
            "model.dropout_input=0.2",
            "model.ar_alpha=1",
            "model.tar_beta=1",
            "callbacks.text_sample.max_new_tokens=5",
            f"hydra.run.dir={tmp_path / cell}",
        ]
        procs[cell] = subprocess.Popen(
            [sys.executable, "src/train.py", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for cell, proc in procs.items():
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
        ckpt = torch.load(tmp_path / cell / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["rnnlm"]["config"]["trainer"]["devices"] == 2
        assert ckpt["rnnlm"]["config"]["model"]["weight_drop"] == 0.5
