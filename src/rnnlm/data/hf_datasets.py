"""Corpora from Hugging Face `datasets` (`data=hf data.hf_name=wikitext data.hf_config=wikitext-2-raw-v1`).

The dataset is read with `datasets.load_dataset` (a Hub id, or a local folder of data files:
.txt, .csv, .json, .parquet) or `datasets.load_from_disk` (a folder written by `save_to_disk`); its
`text_field` column of each split is written once as train.txt / valid.txt / test.txt under
`<cache_dir>/hf/<key>/`, and from there the corpus is read like any text folder: tokenised into the
token cache, fingerprinted by content. The key covers the dataset's own fingerprints, the split
mapping and the carving, so a changed dataset or setting gets a new folder.

`hf_splits` maps rnnlm's splits to the dataset's (`{train: train, valid: validation, test: test}`);
a split mapped to null is carved out of the train split: its last `carve_fraction` of rows, valid
before test, so the three stay contiguous runs of the original order.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from rnnlm.data.sources import SPLITS, CorpusError

EXTRA = "pip install 'rnnlm[datasets]'"
DEFAULT_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def _load(name: str, config: str | None, revision: str | None) -> Any:
    try:
        import datasets
    except ImportError:
        raise CorpusError(f"data=hf needs the datasets package: {EXTRA}") from None
    local = Path(name).expanduser()
    try:
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            loaded = datasets.load_from_disk(str(local))
        else:
            loaded = datasets.load_dataset(name, config, revision=revision)
    except (FileNotFoundError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorpusError(
            f"data.hf_name={name}: no such dataset here or on the Hub ({first}); pass a Hub dataset "
            "id, a local folder of data files, or a folder written by save_to_disk"
        ) from None
    except ValueError as err:  # e.g. a dataset with several configs and none chosen
        first = str(err).strip().splitlines()[0]
        raise CorpusError(f"data.hf_name={name}: {first} (set data.hf_config=...)") from None
    if isinstance(loaded, datasets.Dataset):  # a single split saved to disk
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _plan(splits: dict[str, str | None] | None, available: list[str], name: str) -> dict:
    plan = {**DEFAULT_SPLITS, **(splits or {})}
    unknown = sorted(set(plan) - set(SPLITS))
    if unknown:
        raise CorpusError(
            f"data.hf_splits has {', '.join(unknown)}: its keys are rnnlm's splits train, valid, test"
        )
    if plan["train"] is None:
        raise CorpusError("data.hf_splits.train is null: the train split must name a split")
    for split, source in plan.items():
        if source is not None and source not in available:
            raise CorpusError(
                f"data.hf_splits.{split}={source} is not a split of {name} (it has "
                f"{', '.join(available)}): name one of them, or null to carve it from train"
            )
    return plan


def prepare_hf(
    name: str,
    cache_dir: str | Path,
    config: str | None = None,
    text_field: str = "text",
    splits: dict[str, str | None] | None = None,
    carve_fraction: float = 0.05,
    revision: str | None = None,
) -> Path:
    """A folder with train.txt, valid.txt and test.txt of the dataset's `text_field`."""
    loaded = _load(name, config, revision)
    plan = _plan(splits, list(loaded.keys()), name)
    train = loaded[plan["train"]]
    if text_field not in train.column_names:
        raise CorpusError(
            f"data.text_field={text_field} is not a column of {name} (its columns: "
            f"{', '.join(train.column_names)}): set data.text_field to the column that holds the text"
        )
    carved = [s for s in ("valid", "test") if plan[s] is None]
    key_parts = {
        "name": name,
        "config": config,
        "revision": revision,
        "field": text_field,
        "plan": plan,
        "carve": carve_fraction if carved else None,
        "fingerprints": {s: loaded[v]._fingerprint for s, v in plan.items() if v is not None},
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() / "hf" / f"{Path(name).name}-{config or 'default'}-{key}"
    if all((folder / f"{s}.txt").is_file() for s in SPLITS):
        return folder
    rows = {s: loaded[v] for s, v in plan.items() if v is not None}
    if carved:
        n = len(train)
        size = int(n * carve_fraction)
        if size < 1 or n - size * len(carved) < 1:
            raise CorpusError(
                f"data.carve_fraction={carve_fraction} of {name}'s {n} train rows leaves no rows to "
                f"carve {' and '.join(carved)} from (or none to train on): raise it, or map the "
                "splits in data.hf_splits"
            )
        keep = n - size * len(carved)
        rows["train"] = train.select(range(keep))
        for i, split in enumerate(carved):
            rows[split] = train.select(range(keep + i * size, keep + (i + 1) * size))
    folder.mkdir(parents=True, exist_ok=True)
    for split, data in rows.items():
        if text_field not in data.column_names:
            raise CorpusError(
                f"data.text_field={text_field} is not a column of {name}'s {plan[split]} split"
            )
        tmp = folder / f".{split}.txt.{os.getpid()}"
        with tmp.open("w", encoding="utf-8") as f:
            for batch in data.iter(batch_size=10_000):
                for text in batch[text_field]:
                    text = "" if text is None else str(text)
                    f.write(text if text.endswith("\n") else text + "\n")
        os.replace(tmp, folder / f"{split}.txt")  # a reader never sees half a split
    return folder
