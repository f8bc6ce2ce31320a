"""data=hf: corpora read through the real `datasets.load_dataset` / `load_from_disk` from local data,
split mapping, carving valid/test out of a train-only dataset, and one line for each mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_SIZES, run_train_script
from rnnlm.data import LMDataModule
from rnnlm.data.hf_datasets import prepare_hf
from rnnlm.data.sources import CorpusError

LINES = {
    s: [f"{s} line {i} of the play" for i in range(n)]
    for s, n in (("train", 200), ("validation", 20), ("test", 20))
}


def _jsonl(folder: Path, splits: dict[str, list[str]], field: str = "text") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in splits.items():
        rows = "\n".join(json.dumps({field: t, "label": i}) for i, t in enumerate(lines))
        (folder / f"{split}.jsonl").write_text(rows + "\n")
    return folder


def test_splits_map_to_the_datasets_splits(tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "data", LINES)
    folder = prepare_hf(str(data), tmp_path / "cache")
    for ours, theirs in (("train", "train"), ("valid", "validation"), ("test", "test")):
        assert (folder / f"{ours}.txt").read_text().splitlines() == LINES[theirs]
    assert prepare_hf(str(data), tmp_path / "cache") == folder  # written once


def test_a_train_only_dataset_is_carved(tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "data", {"train": LINES["train"]})
    splits = {"valid": None, "test": None}
    folder = prepare_hf(str(data), tmp_path / "cache", splits=splits, carve_fraction=0.1)
    got = {s: (folder / f"{s}.txt").read_text().splitlines() for s in ("train", "valid", "test")}
    assert got["train"] == LINES["train"][:160]
    assert got["valid"] == LINES["train"][160:180] and got["test"] == LINES["train"][180:]


def test_a_save_to_disk_folder_and_the_token_cache(tmp_path: Path) -> None:
    import datasets

    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {s: datasets.Dataset.from_dict({"body": lines}) for s, lines in LINES.items()}
    ).save_to_disk(str(saved))
    dm = LMDataModule(
        hf_name=str(saved), text_field="body", tokenizer="word", cache_dir=str(tmp_path / "c")
    )
    tok = dm.load()
    assert "play" in tok.stoi and len(dm.ids["valid"]) == 20 * 7  # 6 words and <eos> a line


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"text_field": "body"}, "data.text_field=body is not a column of"),
        ({"splits": {"valid": "dev"}}, "data.hf_splits.valid=dev is not a split of"),
        ({"splits": {"dev": "train"}}, "its keys are rnnlm's splits"),
        ({"splits": {"valid": None}, "carve_fraction": 0.001}, "leaves no rows to carve valid"),
    ],
)
def test_mistakes_are_one_line(tmp_path: Path, kwargs: dict, words: str) -> None:
    data = _jsonl(tmp_path / "data", LINES)
    with pytest.raises(CorpusError, match=words) as err:
        prepare_hf(str(data), tmp_path / "cache", **kwargs)
    assert "\n" not in str(err.value)


def test_a_dataset_that_is_nowhere_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such dataset here or on the Hub") as err:
        prepare_hf("nobody/no-such-dataset", tmp_path / "cache")
    assert "\n" not in str(err.value)


def test_train_refuses_a_missing_split_in_one_line(tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "data", {"train": LINES["train"]})
    missing = run_train_script(
        ["data=hf", f"data.hf_name={data}", *TINY_SIZES, f"hydra.run.dir={tmp_path / 'r2'}"]
    )
    assert missing.returncode != 0
    assert "data.hf_splits.valid=validation is not a split of" in missing.stderr
    assert len([ln for ln in missing.stderr.splitlines() if ln.startswith("error")]) == 1


@pytest.mark.slow
def test_train_reads_a_dataset_through_the_entry_point(tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "data", {"train": LINES["train"]})
    out = run_train_script(
        [
            "data=hf",
            f"data.hf_name={data}",
            "data.hf_splits.valid=null",
            "data.hf_splits.test=null",
            *TINY_SIZES,
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
    )
    assert out.returncode == 0, out.stderr[-2000:]
