"""DDP on CPU (subprocesses, as the DDP launcher needs): weight drop with LSTM and GRU on two ranks;
two torchrun "nodes" on localhost against one process of the same global batch, and the one-line
errors of a torchrun command that cannot work."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO_ROOT, run_train_script, start_train_script, tiny_overrides
from rnnlm.errors import UserError
from rnnlm.training import launch, run_folder

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


# ==================================================================================================
# Two nodes (torchrun on localhost, one gloo rank each) = one process with the global batch
# ==================================================================================================
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_torchrun_nodes(
    args: list[str], nodes: int = 2, timeout: float = 150
) -> list[subprocess.CompletedProcess[str]]:
    """`torchrun --nnodes=<nodes> --nproc-per-node=1 src/train.py *args`, once per node, all at once on
    127.0.0.1 (c10d rendezvous: a node that fails makes the others fail at once instead of waiting
    for it); whatever is still running at the deadline, or when this fails, is killed with its ranks."""
    endpoint = f"127.0.0.1:{_free_port()}"
    torchrun = ["-m", "torch.distributed.run", f"--nnodes={nodes}", "--nproc-per-node=1"]
    torchrun += ["--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=rnnlm-test"]
    procs = [start_train_script(args, new_session=True, launcher=torchrun) for _ in range(nodes)]
    deadline = time.monotonic() + timeout
    outs = []
    try:
        for proc in procs:
            outs.append(proc.communicate(timeout=max(deadline - time.monotonic(), 1)))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    return [
        subprocess.CompletedProcess(p.args, p.returncode, *out)
        for p, out in zip(procs, outs, strict=True)
    ]


def _val_ppls(run_dir: Path) -> list[float]:
    lines = (run_dir / "validations.jsonl").read_text().splitlines()
    return [json.loads(line)["val_ppl"] for line in lines]


@pytest.mark.slow  # ~85 s on 2 cores: one process and two torchrun nodes, each trained, then resumed
def test_two_torchrun_nodes_match_one_process_of_the_global_batch(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """Two nodes of one rank each with data.batch_size=B give the validation (and test) losses of one
    process with data.batch_size=2B, to float tolerance; and again after both resume with `resume=`.

    The rule: R ranks (nodes x devices, by global rank) of batch B read exactly the columns of one
    process of batch R*B (layout.shard cuts each rank's shard at a whole number of columns), DDP
    averages the ranks' per-token mean gradients (= the mean over all R*B columns, before clipping),
    and the validation loss sums tokens and losses over all ranks. Dropout is off: each rank draws its
    own masks. Precision is pinned to 32-true (the default may pick bf16 on some machines).
    """
    common = [
        *tiny_overrides(corpus_dir),  # char level, 16 units, bptt 8, debug=smoke
        "model=gru",
        "model.dropout=0",
        "trainer.precision=32-true",
        "trainer.accelerator=cpu",
        "trainer.limit_train_batches=6",
        "trainer.val_check_interval=3",  # two validations per epoch: after 3 and 6 steps
        "callbacks.text_sample.max_new_tokens=5",
    ]
    single, ddp = tmp_path / "one", tmp_path / "nodes"
    nodes_args = ["trainer.num_nodes=2", "trainer.devices=1", "trainer.strategy=ddp"]
    one = run_train_script([*common, "data.batch_size=8", f"hydra.run.dir={single}"], timeout=150)
    assert one.returncode == 0, one.stderr[-3000:]
    # One folder for both nodes (on a cluster: a filesystem they share).
    nodes = _run_torchrun_nodes([*common, "data.batch_size=4", *nodes_args, f"hydra.run.dir={ddp}"])
    for node in nodes:
        assert node.returncode == 0, node.stderr[-3000:]

    # Rank 0 owns the folder and its record; rank 1 logs beside it with the global rank and world.
    assert sorted(p.name for p in ddp.glob("*.log")) == ["train.log", "train_rank_1.log"]
    assert "data: rank 1/2 reads valid tokens" in (ddp / "train_rank_1.log").read_text()
    assert _val_ppls(single)[1] < _val_ppls(single)[0]  # it trained: the updates are compared too
    assert _val_ppls(ddp) == pytest.approx(_val_ppls(single), rel=1e-5)

    # A second epoch by `resume=` alone: every node finds the folder from it (no hydra.run.dir).
    one = run_train_script([f"resume={single}", "trainer.max_epochs=2"], timeout=150)
    assert one.returncode == 0, one.stderr[-3000:]
    for node in _run_torchrun_nodes([f"resume={ddp}", "trainer.max_epochs=2"]):
        assert node.returncode == 0, node.stderr[-3000:]
    assert len(_val_ppls(single)) == 4
    assert _val_ppls(ddp) == pytest.approx(_val_ppls(single), rel=1e-5)
    one_result, nodes_result = (json.loads((d / "result.json").read_text()) for d in (single, ddp))
    assert nodes_result["status"] == "finished" and len(nodes_result["attempts"]) == 2
    assert nodes_result["steps"] == one_result["steps"] == 12
    assert nodes_result["tokens_seen"] == one_result["tokens_seen"]
    assert nodes_result["best_val_ppl"] == pytest.approx(one_result["best_val_ppl"], rel=1e-5)
    assert nodes_result["test_ppl"] == pytest.approx(one_result["test_ppl"], rel=1e-5)


def test_torchrun_without_a_named_run_folder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node composes its own config: without hydra.run.dir each would pick a timestamp of its own."""
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    run_folder.check_one_folder(["model=gru"])  # one process: a folder of its own is right
    with pytest.raises(UserError, match=r"trainer.num_nodes=2 .* hydra.run.dir=<folder"):
        run_folder.check_one_folder(["+trainer.num_nodes=2"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UserError, match=r"rank 1 of WORLD_SIZE=2 \(torchrun\) but names no"):
        run_folder.check_one_folder(["model=gru"])
    run_folder.check_one_folder(["model=gru", "hydra.run.dir=/shared/run"])
    run_folder.check_one_folder(["-m", "model=gru,lstm"])  # refused per job by check_launch


def test_torchrun_ranks_above_0_log_beside_rank_0(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    assert run_folder.rank_argv(["model=gru"]) == ["model=gru"]
    monkeypatch.setenv("RANK", "3")
    assert run_folder.rank_argv(["hydra.run.dir=/r"]) == [
        "hydra.run.dir=/r",
        "hydra.job.name=train_rank_3",
        "hydra.output_subdir=null",
    ]
    # Lightning's own DDP children come with their job name (and a resume with its output_subdir).
    lightning_child = ["hydra.job.name=train_ddp_process_3", "hydra.output_subdir=null"]
    assert run_folder.rank_argv(lightning_child) == lightning_child


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"accelerator": "cpu", "devices": 1, "num_nodes": 2}, None),
        ({"accelerator": "cpu", "devices": 1}, "asks for 1: set trainer.num_nodes to torchrun's"),
        ({"accelerator": "cpu", "devices": 2, "num_nodes": 1}, "asks for 2: set trainer.num_nodes"),
    ],
)
def test_torchrun_ranks_must_match_the_trainer(
    trainer: dict, message: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchrun --nnodes=2 --nproc-per-node=1 (rank 1): the trainer must ask for 2 nodes of 1 device."""
    env = {"TORCHELASTIC_RUN_ID": "none", "RANK": "1", "GROUP_RANK": "1", "LOCAL_RANK": "0"}
    for var, value in {**env, "LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(launch, "in_multirun", lambda: False)
    cfg = OmegaConf.create({"trainer": {"strategy": "ddp", **trainer}})
    if message is None:
        launch.check_launch(cfg)
    else:
        with pytest.raises(UserError, match=message):
            launch.check_launch(cfg)
    monkeypatch.setattr(launch, "in_multirun", lambda: True)
    with pytest.raises(UserError, match=r"multirun \(-m\) under torchrun"):
        launch.check_launch(cfg)
