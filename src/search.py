"""Semantic search: `python src/search.py ckpt_path=<file> corpus=<file or folder> query="..." top_k=5`."""

import hydra
from omegaconf import DictConfig

from rnnlm.cli import prepare_argv, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="search")
def main(cfg: DictConfig) -> list:
    from rnnlm.applications.search import search  # heavy (torch): after the config is checked

    return run_task(search, cfg)


if __name__ == "__main__":
    prepare_argv("search")
    main()
