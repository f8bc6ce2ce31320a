"""Each key of a composed config against the config before the user's overrides: known keys with the
default's type, added (`+`) keys only as arguments of the node's `_target_`, values within the shared
ranges of rnnlm/schema.py, and the rules that read several keys at once."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnlm.config.signatures import target_params
from rnnlm.data.download import DATASETS
from rnnlm.errors import UserError
from rnnlm.models.cells.keys import CELL_OPTIONS, SCAN_BACKENDS, check_cell_options
from rnnlm.models.rules import check_forget_bias, check_output_layer, check_tie_weights
from rnnlm.schema import INJECTED, KEYS, Rule, is_number, one_of, optional

# Standard corpora: the download table itself (rnnlm.data.download imports no torch).
DATASET_NAMES = tuple(sorted(DATASETS))

# Impossible values: the shared table (rnnlm/schema.py), plus the rules that read another list.
RULES: dict[str, Rule] = {
    **KEYS,
    "model.scan": one_of(SCAN_BACKENDS, f"must be one of {', '.join(SCAN_BACKENDS)}"),
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


def get_key(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return ABSENT
        node = node[part]
    return node


ABSENT = object()


def _suggest(word: str, options: set[str], prefix: str) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return (
        f"; did you mean {prefix}{close[0]}?"
        if close
        else f"; valid keys: {', '.join(sorted(options))}"
    )


def check_added_key(key: str, value: Any, base: dict) -> None:
    """A key present in the composed config but not in the defaults: valid only as a target's argument."""
    parts = key.split(".")
    # Find the deepest existing node of the defaults that contains the new key.
    for depth in range(len(parts) - 1, -1, -1):
        parent_key = ".".join(parts[:depth])
        parent = base if not parent_key else get_key(base, parent_key)
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
        params = target_params(target)
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
        return is_number(value)
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
        default = get_key(base, key)
        if default is ABSENT:
            check_added_key(key, value, base)
        elif not _same_kind(default, value):
            raise UserError(
                f"config: {key}={_show(value)} has the wrong type: expected {_kind_name(default)} "
                f"(the default is {_show(default)})"
            )
    for key, rule in RULES.items():
        value = get_key(full, key)
        if value is ABSENT or (isinstance(value, str) and value.startswith("${")):
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
    interpolated = any(isinstance(v, str) and v.startswith("${") for v in model.values())
    if ("softmax" in model or "forget_bias" in model) and not interpolated:
        try:
            check_forget_bias(model.get("forget_bias"), str(model.get("cell", "")))
            check_output_layer(
                str(model.get("softmax", "full")),
                bool(model.get("tie_weights")),
                model.get("adaptive_cutoffs"),
                model.get("adaptive_div_value"),
                bool(model.get("sparse_embedding")),
            )
        except ValueError as err:
            raise UserError(f"config: {err}") from None


def check_data_files(cfg: DictConfig) -> None:
    """A corpus folder that is missing, or lacks or has an empty split file, is known before any run."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig):
        return
    if str(data.get("_target_", "")).endswith("PairDataModule"):  # translation pairs: .tsv/.jsonl
        from rnnlm.data.pairs import check_pair_config

        keys = OmegaConf.to_container(data, resolve=False)
        try:
            keys["path"] = data.get("path")
        except OmegaConfBaseException:  # an interpolation that only resolves inside a Hydra run
            keys["path"] = None
        check_pair_config(keys)
        return
    if not data.get("path"):
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
