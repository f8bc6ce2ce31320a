"""Likelihood ranking: `python src/rank.py ckpt_path=<file> context="..." candidates='["a", "b"]'`."""

import hydra
from omegaconf import DictConfig

from rnnlm.cli import prepare_argv, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="rank")
def main(cfg: DictConfig) -> list:
    from rnnlm.applications.rank import rank  # heavy (torch): after the config is checked

    return run_task(rank, cfg)


if __name__ == "__main__":
    prepare_argv("rank")
    main()
