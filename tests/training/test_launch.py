"""Before a run starts (rnnlm/training/launch.py): what TensorBoard's HPARAMS tab shows of a run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF_DIR
from rnnlm.training.launch import flat_hparams


def test_hparams_describe_the_experiment_not_its_files() -> None:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=lstm", "optim=sgd", "data.cache_dir=/tmp/c"])
    # the nodes flat_hparams reads (the rest interpolates Hydra's runtime values)
    cfg = OmegaConf.masked_copy(cfg, ["data", "model", "optim", "scheduler", "seed"])
    hparams = flat_hparams(cfg)
    assert hparams["model/cell"] == "lstm" and hparams["model/hidden_dim"] == cfg.model.hidden_dim
    assert hparams["optim/lr"] == cfg.optim.lr and "data/bptt" in hparams and "seed" in hparams
    for bookkeeping in ("cache_dir", "url", "sha256", "encoding_errors"):
        assert f"data/{bookkeeping}" not in hparams
    assert not any(key.endswith("_target_") for key in hparams)


# keep_large_blocks_in_heap: a block freed by one step is reused by the next without page faults, at
# any size (glibc's own mmap threshold stops at 32 MB; a long window's activations are larger).
HEAP_CODE = """
import resource, sys, torch
from rnnlm.training.launch import keep_large_blocks_in_heap
if sys.argv[1] == "keep":
    keep_large_blocks_in_heap()
x = torch.ones(50_000_000)  # 200 MB, as a step's activations
del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(50_000_000)  # the next step's block of the same size
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_a_large_block_is_reused_without_page_faults() -> None:
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", HEAP_CODE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    assert faults("default") > 40_000  # 200 MB of 4 KB pages faulted in again
    assert faults("keep") < 1_000
