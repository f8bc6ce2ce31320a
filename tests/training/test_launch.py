"""Before a run starts (rnnlm/training/launch.py): what TensorBoard's HPARAMS tab shows of a run."""

from __future__ import annotations

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
