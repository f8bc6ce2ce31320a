"""The Hydra configs shipped inside the package (`rnnlm/conf/`), the rules they obey and the check
that applies those rules before anything runs."""

from __future__ import annotations

from pathlib import Path

# Found through the package, so an installed wheel finds its configs from any folder.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def in_multirun() -> bool:
    """Whether this job is one of a Hydra multirun (`-m`): its errors end the job, not the sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
