"""Packages whose names are imported on first use: `import rnnlm.models` (or `rnnlm.data`) stays cheap
until a name is read, so a light part (the cells' key table the config check reads) loads without torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports each name of `where` from its module."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__


__all__ = ["lazy_getattr"]
