"""Sample text: `python src/generate.py ckpt_path=<file> prompt="ROMEO:" max_new_tokens=300 temperature=0.8`."""

import hydra
from omegaconf import DictConfig

from rnnlm.cli import prepare_argv, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> list[str]:
    from rnnlm.generate import generate  # heavy (torch, Lightning): after the config is checked

    return run_task(generate, cfg)


if __name__ == "__main__":
    prepare_argv("generate")
    main()
