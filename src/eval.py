"""Score a checkpoint: `python src/eval.py ckpt_path=<file> [data.path=<folder>] [eval.batch_size=N]`."""

import hydra
from omegaconf import DictConfig

from rnnlm.cli import run_task
from rnnlm.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> dict:
    return run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
