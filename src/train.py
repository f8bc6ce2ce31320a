"""Train a language model: `python src/train.py model=lstm optim=sgd` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from rnnlm.cli import prepare_argv, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from rnnlm.training.run import train  # heavy (torch, Lightning): after the config is checked

    return run_task(train, cfg)


if __name__ == "__main__":
    prepare_argv("train")
    main()
