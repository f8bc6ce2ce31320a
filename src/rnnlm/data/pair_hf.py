"""Pairs from a Hugging Face dataset (`data=pairs data.format=hf data.hf_name=...`): two text fields.

The dataset is a Hub id, a local folder of data files (.json/.jsonl/.csv/.parquet) or a folder written
by `save_to_disk`, loaded as for language models (data/hf_datasets.py). `data.source_field` and
`data.target_field` name the fields in file order; a dotted name reaches into a nested one, as in the
Hub's translation datasets (`translation.en`, `translation.fr`). A split mapped to null in
`data.hf_splits` is carved from the end of train (`data.carve_fraction` of its rows each).
"""

from __future__ import annotations

from collections.abc import Sequence

from rnnlm.data.hf_datasets import _load, _plan
from rnnlm.data.pairs import Pairs, pick_fields
from rnnlm.data.sources import SPLITS, CorpusError


def _rows(data: object, fields: Sequence[str], where: str) -> Pairs:
    first, second = [], []
    for i, row in enumerate(data):  # type: ignore[call-overload]
        a, b = pick_fields(row, fields, f"{where} row {i}")
        first.append(a)
        second.append(b)
    return first, second


def read_hf_pairs(
    name: str,
    fields: Sequence[str],
    config: str | None = None,
    splits: dict[str, str | None] | None = None,
    carve_fraction: float = 0.05,
) -> dict[str, Pairs]:
    """Each split's pairs (first field, second field), read from the dataset."""
    loaded = _load(name, config, None)
    plan = _plan(dict(splits) if splits else None, list(loaded.keys()), name)
    out = {s: _rows(loaded[v], fields, f"{name} {v}") for s, v in plan.items() if v is not None}
    carved = [s for s in ("valid", "test") if plan[s] is None]
    if carved:
        first, second = out["train"]
        size = int(len(first) * carve_fraction)
        keep = len(first) - size * len(carved)
        if size < 1 or keep < 1:
            raise CorpusError(
                f"data.carve_fraction={carve_fraction} of {name}'s {len(first)} train rows leaves no "
                f"rows for {' and '.join(carved)} (or none to train on): raise it, or map the splits "
                "in data.hf_splits"
            )
        out["train"] = first[:keep], second[:keep]
        for i, split in enumerate(carved):
            lo, hi = keep + i * size, keep + (i + 1) * size
            out[split] = first[lo:hi], second[lo:hi]
    for split in SPLITS:
        if not out[split][0]:
            raise CorpusError(f"the {split} split of {name} has no rows: every split needs pairs")
    return out


__all__ = ["read_hf_pairs"]
