"""Config validation before anything runs: misspelt keys, wrong types and impossible values.

The schema of each config group is the group option's own YAML: every key a user may set is there with a
default of the right type. A key the command line adds (with `+`, which Hydra accepts silently) must be a
parameter of the node's `_target_` (e.g. a Trainer argument), else it is a typo and the closest valid key
is suggested (config/keys.py). Values are held to the ranges of rnnlm/schema.py, the table the code
checks its arguments with. This module composes the config with and without the user's overrides and
turns Hydra's composition errors into one line. Nothing here imports torch or Lightning unless a `+`
key needs a signature, so a rejected command stops in about a second, before Hydra creates an output
folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnnlm.config.keys import ABSENT, check, check_added_key, check_data_files, get_key
from rnnlm.config.signatures import target_params
from rnnlm.errors import UserError
from rnnlm.schema import INJECTED


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
            check_added_key(key, "?", OmegaConf.to_container(base, resolve=False))
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


def json_list(value: str) -> list | None:
    """The list a quoted JSON array stands for (`'["valid", "test"]'`, `"[2000, 6000]"`), else None.
    Unquoted, Hydra reads `[valid, test]` and `["valid", "test"]` as lists itself."""
    if len(value) < 2 or value[0] not in "'\"" or value[-1] != value[0]:
        return None
    try:
        parsed = json.loads(value[1:-1])
    except ValueError:
        return None
    ok = isinstance(parsed, list) and all(
        v is None or isinstance(v, str | int | float | bool) for v in parsed
    )
    return parsed if ok else None


def hydra_list(values: list) -> str:
    """`values` in Hydra's override syntax: strings quoted, so any character survives."""

    def one(v: object) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            # Hydra reads a backslash literally unless it stands before a quote or the end
            v = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, v)
            return "'" + v.replace("'", "\\'") + "'"
        return repr(v)

    return "[" + ",".join(one(v) for v in values) + "]"


def plain_target_keys(config_name: str, conf_dir: str, args: list[str]) -> list[str]:
    """The command line with a `+` put before each key that its config file leaves out but that is an
    argument of its node's `_target_`: `trainer.max_steps=200` as well as `+trainer.max_steps=200`;
    and a list key given a quoted JSON array (`eval.splits='["valid"]'`) given it as a list.

    Hydra refuses a key its config does not have unless it is added with `+`; a Trainer (or optimiser,
    callback, model) argument is a key of that node all the same. Anything else is left as it is, for the
    check to refuse with its "did you mean". Flags (-m, --cfg) pass through.
    """
    plain = [a for a in args if not a.startswith(("-", "+", "~")) and "=" in a]
    nested = [a for a in plain if "." in a.split("=", 1)[0] and not a.startswith("hydra.")]
    quoted = [a for a in plain if json_list(a.split("=", 1)[1]) is not None]
    if not nested and not quoted:
        return args
    overrides = [a for a in args if not a.startswith("-")]
    try:
        base = OmegaConf.to_container(
            _compose(config_name, conf_dir, _defaults_overrides(overrides, conf_dir)), resolve=False
        )
    except (HydraException, OmegaConfBaseException):  # the check will say what is wrong
        return args
    out = []
    for arg in args:
        key = arg.split("=", 1)[0]
        if arg in quoted and (get_key(base, key) is None or isinstance(get_key(base, key), list)):
            arg = f"{key}={hydra_list(json_list(arg.split('=', 1)[1]))}"  # a JSON string as a list
        elif arg in nested and get_key(base, key) is ABSENT:
            parent_key, _, name = key.rpartition(".")
            parent = get_key(base, parent_key)
            target = parent.get("_target_") if isinstance(parent, dict) else None
            params = target_params(target) if isinstance(target, str) else None
            if params and name in params - INJECTED.get(parent_key, set()) - {"self"}:
                arg = f"+{arg}"
        out.append(arg)
    return out
