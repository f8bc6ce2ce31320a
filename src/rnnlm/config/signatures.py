"""The parameter names of a config node's `_target_`, read from its source with `ast` where it can be
(following re-exports and rnnlm's lazy package tables), so checking a `+` key imports no torch."""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import inspect
from pathlib import Path
from typing import Any


def target_params(target: str) -> set[str] | None:
    """Parameter names of a `_target_` callable, or None if it takes **kwargs or cannot be found.

    Read from the source with `ast` where it can be (following re-exports), so that checking a key of
    the model, trainer or optimiser does not import torch and Lightning (3-4 s); imported otherwise.
    """
    static = _static_params(target)
    if static is not _UNKNOWN:
        return static  # type: ignore[return-value]
    module, _, name = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
        params = inspect.signature(obj).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


_UNKNOWN = object()


def _module_source(module: str) -> Path | None:
    """The file of `module`, found without importing it or its parent packages."""
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: located, not imported
    except (ImportError, ValueError):
        return None
    for k in range(1, len(parts)):
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[: k + 1]), list(spec.submodule_search_locations)
        )
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _is_lazy_table(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["_WHERE"]
        and isinstance(node.value, ast.Dict)
    )


def _static_params(target: str, hops: int = 6) -> Any:
    """`_signature_params` from the source, or _UNKNOWN (a class without its own __init__, ...)."""
    module, _, name = target.rpartition(".")
    for _ in range(hops):
        path = _module_source(module)
        if path is None:
            return _UNKNOWN
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            return _UNKNOWN
        found = None
        for node in tree.body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
                found = node
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        found = node
                        origin = alias.name
            elif found is None and _is_lazy_table(node):  # rnnlm.data's `_WHERE = {name: module}`
                table = ast.literal_eval(node.value)  # type: ignore[attr-defined]
                if name in table:
                    found = ast.ImportFrom(module=table[name], names=[], level=0)
                    origin = name
        if isinstance(found, ast.ImportFrom):
            base = module.split(".")
            if found.level:  # relative: from .x import y, inside package `module` or beside it
                package = base if path.name == "__init__.py" else base[:-1]
                base = package[: len(package) - found.level + 1]
                module = ".".join([*base, found.module] if found.module else base)
            else:
                module = found.module or ""
            name = origin
            continue
        if isinstance(found, ast.ClassDef):
            init = next(
                (n for n in found.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
                None,
            )
            if init is None:  # inherited: the first base class's, looked up in this module
                bases = [b.id for b in found.bases if isinstance(b, ast.Name)]
                if not bases or bases[0] == name:
                    return _UNKNOWN
                name = bases[0]
                continue
            found = init
        if (
            not isinstance(found, ast.FunctionDef)
            or found.decorator_list
            and found.name != "__init__"
        ):
            return _UNKNOWN
        args = found.args
        if args.kwarg is not None:
            return None
        return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    return _UNKNOWN
