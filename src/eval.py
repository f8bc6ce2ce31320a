"""Score a checkpoint: `python src/eval.py ckpt_path=<file> [data.path=<folder>] [eval.batch_size=N]`."""

import hydra
from omegaconf import DictConfig

from rnnlm.cli import prepare_argv, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> dict:
    from rnnlm.evaluate import evaluate  # heavy (torch, Lightning): after the config is checked

    return run_task(evaluate, cfg)


if __name__ == "__main__":
    prepare_argv("eval")
    main()
