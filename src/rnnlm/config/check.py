"""Config validation before anything runs: misspelt keys, wrong types and impossible values.

The schema of each config group is the group option's own YAML: every key a user may set is there with a
default of the right type. A key the command line adds (with `+`, which Hydra accepts silently) must be a
parameter of the node's `_target_` (e.g. a Trainer argument), else it is a typo and the closest valid key
is suggested. Values are checked against the rules below. This module imports neither torch nor
Lightning unless a `+` key needs a signature, so a rejected command stops in about a second, before Hydra
creates an output folder.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.machinery
import importlib.util
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnlm.data.download import DATASETS
from rnnlm.data.tokenizers import TOKENIZERS
from rnnlm.errors import UserError
from rnnlm.models.cells.keys import CELL_OPTIONS, SCAN_BACKENDS, check_cell_options
from rnnlm.models.rules import check_tie_weights
from rnnlm.schema import INJECTED, KEYS, Rule, one_of, optional


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# Standard corpora: the download table itself (rnnlm.data.download imports no torch).
DATASET_NAMES = tuple(sorted(DATASETS))

# Impossible values: the shared table (rnnlm/schema.py), plus the rules that read another list.
RULES: dict[str, Rule] = {
    **KEYS,
    "model.scan": one_of(SCAN_BACKENDS, f"must be one of {', '.join(SCAN_BACKENDS)}"),
    "data.tokenizer": one_of(tuple(TOKENIZERS)),
    "data.dataset": optional(
        one_of(DATASET_NAMES), f"must be null or one of {', '.join(DATASET_NAMES)}"
    ),
}
# Keys of a node that are not arguments of its `_target_` but are read by rnnlm itself.
EXTRA_KEYS = {"scheduler": {"interval", "monitor"}, "trainer": {"detect_nonfinite"}}


def _fail(key: str, value: Any, rule: str) -> UserError:
    return UserError(f"config: {key}={_show(value)} {rule}")


def _show(value: Any) -> str:
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=False)
    return repr(value) if isinstance(value, str) else str(value)


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), node


def _get(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


_ABSENT = object()


def _signature_params(target: str) -> set[str] | None:
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


def _suggest(word: str, options: set[str], prefix: str) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return (
        f"; did you mean {prefix}{close[0]}?"
        if close
        else f"; valid keys: {', '.join(sorted(options))}"
    )


def _check_added_key(key: str, value: Any, base: dict) -> None:
    """A key present in the composed config but not in the defaults: valid only as a target's argument."""
    parts = key.split(".")
    # Find the deepest existing node of the defaults that contains the new key.
    for depth in range(len(parts) - 1, -1, -1):
        parent_key = ".".join(parts[:depth])
        parent = base if not parent_key else _get(base, parent_key)
        if isinstance(parent, dict):
            break
    name = parts[depth]
    known = {k for k in parent if not k.startswith("_")}
    target = parent.get("_target_") if isinstance(parent, dict) else None
    injected = INJECTED.get(parent_key, set())
    if target and depth == len(parts) - 1:
        if name in injected:
            raise UserError(
                f"config: {key}={_show(value)} is set by rnnlm itself when it builds {parent_key}: "
                f"drop the override"
            )
        params = _signature_params(target)
        if params is None or name in params:
            return
        known |= params - injected - {"self"}
    where = parent_key or "the top level"
    prefix = f"{parent_key}." if parent_key else ""
    raise UserError(
        f"config: {key}={_show(value)} is not a known key of {where}"
        + _suggest(name, known | EXTRA_KEYS.get(parent_key, set()), prefix)
    )


def _same_kind(default: Any, value: Any) -> bool:
    if default == "???":  # a required value without a default: the code that reads it checks it
        return True
    if default is None or value is None or isinstance(default, str) and default.startswith("${"):
        return True
    if isinstance(value, str) and value.startswith("${"):
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return _num(value)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, str):
        return isinstance(value, str)
    return isinstance(value, type(default))


def _kind_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), type(value).__name__
    )


def check(cfg: DictConfig, defaults: DictConfig) -> None:
    """Compare the composed config with the same config before the user's key overrides."""
    full = OmegaConf.to_container(cfg, resolve=False)
    base = OmegaConf.to_container(defaults, resolve=False)
    full.pop("hydra", None)
    base.pop("hydra", None)
    for key, value in _leaves(full):
        if value == "???":
            raise UserError(f"config: {key} is required: pass {key}=<value>")
        default = _get(base, key)
        if default is _ABSENT:
            _check_added_key(key, value, base)
        elif not _same_kind(default, value):
            raise UserError(
                f"config: {key}={_show(value)} has the wrong type: expected {_kind_name(default)} "
                f"(the default is {_show(default)})"
            )
    for key, rule in RULES.items():
        value = _get(full, key)
        if value is _ABSENT or (isinstance(value, str) and value.startswith("${")):
            continue
        if rule.broken_by(value):
            raise _fail(key, value, rule.words)
    data = full.get("data") or {}
    if data.get("tokenizer") == "bpe" and data.get("vocab_size") is None:
        raise UserError(
            "config: data.tokenizer=bpe needs data.vocab_size (e.g. data.vocab_size=8000)"
        )
    model = full.get("model") or {}
    if isinstance(model.get("cell"), str):
        options = {k: model[k] for k in (*CELL_OPTIONS, "weight_drop") if k in model}
        try:
            check_cell_options(model["cell"], options, model.get("hidden_dim"))
        except ValueError as err:
            raise UserError(f"config: {err}") from None
    if "hidden_dim" in model:
        try:
            check_tie_weights(
                bool(model.get("tie_weights")),
                model.get("embedding_dim"),
                model["hidden_dim"],
                model.get("last_hidden_dim"),
            )
        except ValueError as err:
            raise UserError(f"config: {err}") from None


def check_data_files(cfg: DictConfig) -> None:
    """A corpus folder that is missing, or lacks or has an empty split file, is known before any run."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or not data.get("path"):
        return
    try:
        path = str(data.path)
    except OmegaConfBaseException:  # an interpolation that only resolves inside a Hydra run
        return
    from rnnlm.data.sources import SPLITS, CorpusError, load_text_folder

    corpus = load_text_folder(path)
    for split in SPLITS:
        for file in corpus.files[split]:
            if file.stat().st_size == 0:
                raise CorpusError(f"the {split} split ({file}) is empty: every split needs text")


def _defaults_overrides(overrides: list[str], conf_dir: str) -> list[str]:
    """The overrides that choose group options (`model=lstm`, `hydra/launcher=...`): the user's
    'schema'. Top-level values (`test=no`, `seed=x`) are left out, so they are checked like the others."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keep = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.key_or_group
        if o.is_add() or o.is_delete():
            continue
        group = "." not in key and (Path(conf_dir) / key).is_dir()
        if group or key.startswith("hydra.") or "/" in key:
            keep.append(o.input_line)
    return keep


def _composition_error(
    err: Exception, config_name: str, conf_dir: str, overrides: list[str]
) -> UserError:
    """Hydra's multi-line composition errors as one line, with the closest key for a misspelling."""
    text = str(err)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    if first.startswith("Could not override '"):
        key = first.split("'")[1]
        others = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
        try:
            base = _compose(config_name, conf_dir, _defaults_overrides(others, conf_dir))
        except (HydraException, OmegaConfBaseException):  # something else wrong too: Hydra's words
            return UserError(f"config: {' '.join(text.split())}")
        try:
            _check_added_key(key, "?", OmegaConf.to_container(base, resolve=False))
        except UserError as typo:
            value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key), "?")
            return UserError(str(typo).replace(f"{key}='?'", f"{key}={value}"))
        # Not a typo: a key of the target that this option's file leaves out. Checked as if added with
        # `+`, it may mean nothing here (model.heads for a minGRU); else Hydra's hint (add a +) stands.
        added = [f"+{o}" if o.split("=", 1)[0] == key else o for o in overrides]
        try:
            validate_overrides(config_name, conf_dir, added)
        except UserError as refused:
            return refused
    if "Could not find" in first and "Available options" in text:
        options = [line.strip() for line in text.split("Available options", 1)[1].splitlines()[1:]]
        options = [
            o for o in options if o and not o.startswith(("Config search path", "provider="))
        ]
        return UserError(
            f"config: {first.split(': ', 1)[-1]}; available options: {', '.join(options)}"
        )
    return UserError(f"config: {' '.join(text.split())}")


def _compose(config_name: str, conf_dir: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    was = GlobalHydra.instance().is_initialized()
    if was:
        return compose(config_name, overrides=overrides)
    with initialize_config_dir(conf_dir, version_base="1.3"):
        return compose(config_name, overrides=overrides)


def validate_overrides(config_name: str, conf_dir: str, overrides: list[str]) -> None:
    """Compose `config_name` with and without the user's key overrides and check the difference."""
    try:
        cfg = _compose(config_name, conf_dir, overrides)
        defaults = _compose(config_name, conf_dir, _defaults_overrides(overrides, conf_dir))
    except (HydraException, OmegaConfBaseException) as err:
        raise _composition_error(err, config_name, conf_dir, overrides) from None
    check(cfg, defaults)
    check_data_files(cfg)
