"""Source -> target sentence pairs: read from TSV, JSONL or a Hugging Face dataset, in either direction.

A pairs folder holds `train`, `valid` and `test` files of one format: `.tsv` (two columns, in the order of
`data.languages`; further columns, such as Tatoeba's attribution, are ignored) or `.jsonl` (one object a
line, the two sides in `data.source_field` and `data.target_field`, a dotted name reaching into a nested
object such as `translation.en`). `data.direction` ("en-fr" or "fr-en" for `languages: [en, fr]`) says
which side is the source. Bad lines stop the run with the file and line. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from rnnlm.data.pair_tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SIDE_KINDS,
    SPECIALS,
    UNK_ID,
    PairTokenizer,
    SideTokenizer,
)
from rnnlm.data.sources import SPLITS, CorpusError

FORMATS = ("tsv", "jsonl", "hf")
Pairs = tuple[list[str], list[str]]  # the sources and the targets of one split, aligned


def parse_direction(direction: str | None, languages: Sequence[str]) -> bool:
    """Whether the second column/field is the source (`direction` names the other order)."""
    langs = [str(lang) for lang in languages]
    if len(langs) != 2 or langs[0] == langs[1]:
        raise CorpusError(
            f"data.languages={langs} must name the two sides in file order, e.g. [en, fr]"
        )
    if direction is None:
        return False
    forward, backward = "-".join(langs), "-".join(reversed(langs))
    if direction not in (forward, backward):
        raise CorpusError(
            f"data.direction={direction}: the data has languages {langs[0]} and {langs[1]} "
            f"(data.languages): use {forward} or {backward}"
        )
    return direction == backward


def check_settings(format: str, tokenizer: str, direction: str | None, languages: Sequence) -> None:
    """The settings of a pairs config that can be refused before anything is read."""
    if format not in FORMATS:
        raise CorpusError(
            f"data.format={format} is not a pairs format: use one of {', '.join(FORMATS)}"
        )
    if tokenizer not in SIDE_KINDS:
        raise CorpusError(
            f"data.tokenizer={tokenizer} is not a tokenizer of pairs: use one of {', '.join(SIDE_KINDS)}"
        )
    parse_direction(direction, languages)


def split_files(path: str | Path, format: str) -> dict[str, Path]:
    """The train/valid/test files of a pairs folder, each checked to exist."""
    folder = Path(path).expanduser()
    want = ", ".join(f"{s}.{format}" for s in SPLITS)
    if not folder.is_dir():
        raise CorpusError(f"data.path={path} is not a folder: point it at a folder holding {want}")
    files = {s: folder / f"{s}.{format}" for s in SPLITS}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        other = next(
            (f for f in ("tsv", "jsonl") if f != format and (folder / f"train.{f}").is_file()), None
        )
        hint = f" (it holds train.{other}: set data.format={other})" if other else ""
        raise CorpusError(
            f"data.path={path} lacks {', '.join(missing)}: a pairs folder needs {want}{hint}"
        )
    return files


def check_pair_config(data: Mapping[str, Any]) -> None:
    """For the config check: the keys and the folder of a `data=pairs` config, before any run."""
    check_settings(
        str(data.get("format", "tsv")),
        str(data.get("tokenizer", "word")),
        data.get("direction"),
        list(data.get("languages") or ["en", "fr"]),
    )
    if data.get("path") and data.get("format", "tsv") != "hf":
        split_files(str(data["path"]), str(data.get("format", "tsv")))


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"{path} is not valid UTF-8 (byte offset {err.start}): convert it to UTF-8"
        ) from None
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def read_tsv(path: Path) -> Pairs:
    """The first two tab-separated columns of each non-blank line."""
    first, second = [], []
    for n, line in _lines(path):
        cols = line.split("\t")
        if len(cols) < 2:
            raise CorpusError(
                f"{path}:{n} has no tab: each line of a pairs file is source<TAB>target; fix or delete the line"
            )
        if not cols[0].strip() or not cols[1].strip():
            side = "first" if not cols[0].strip() else "second"
            raise CorpusError(
                f"{path}:{n} has an empty {side} side: each line needs both texts; fix or delete the line"
            )
        first.append(cols[0])
        second.append(cols[1])
    return first, second


def _field(row: Mapping[str, Any], name: str) -> Any:
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def pick_fields(row: Any, fields: Sequence[str], where: str) -> list[str]:
    """The texts of `fields` in one record; a missing or empty one is a one-line error naming `where`."""
    if not isinstance(row, Mapping):
        raise CorpusError(
            f"{where} is not a JSON object: each line of a .jsonl pairs file is one object"
        )
    out = []
    for key, name in zip(("source_field", "target_field"), fields, strict=True):
        value = _field(row, name)
        if not isinstance(value, str) or not value.strip():
            what = "has no field" if value is None else "has an empty or non-text field"
            raise CorpusError(
                f"{where} {what} {name!r} (its fields: {', '.join(map(str, row))}): "
                f"set data.{key} to the field that holds the text, or fix the line"
            )
        out.append(value)
    return out


def read_jsonl(path: Path, fields: Sequence[str]) -> Pairs:
    first, second = [], []
    for n, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(
                f"{path}:{n} is not JSON ({err.msg}): each line must be one JSON object"
            ) from None
        a, b = pick_fields(row, fields, f"{path}:{n}")
        first.append(a)
        second.append(b)
    return first, second


def read_folder(path: str | Path, format: str, fields: Sequence[str]) -> dict[str, Pairs]:
    """Each split of a pairs folder, in file order (first column/field, second)."""
    files = split_files(path, format)
    read = read_tsv if format == "tsv" else lambda p: read_jsonl(p, fields)
    out = {s: read(files[s]) for s in SPLITS}
    for split, (first, _) in out.items():
        if not first:
            raise CorpusError(
                f"the {split} split ({files[split]}) has no pairs: every split needs some"
            )
    return out


def orient(splits: dict[str, Pairs], swap: bool) -> dict[str, Pairs]:
    return {s: (b, a) if swap else (a, b) for s, (a, b) in splits.items()}


def fingerprint(splits: Mapping[str, Pairs]) -> str:
    """SHA-256 of the pairs as read (after the direction): a resume on other pairs is refused."""
    h = hashlib.sha256(b"pairs")
    for split in SPLITS:
        sources, targets = splits[split]
        h.update(f"|{split}|{len(sources)}|".encode())
        for s, t in zip(sources, targets, strict=True):
            h.update(f"{s}\t{t}\n".encode())
    return h.hexdigest()[:32]


def group_references(sources: Sequence[str], targets: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Distinct sources in first-seen order, each with all its targets (multi-reference BLEU)."""
    refs: dict[str, list[str]] = {}
    for s, t in zip(sources, targets, strict=True):
        refs.setdefault(s, []).append(t)
    return list(refs.items())


def tatoeba_split(english: str) -> str:
    """The split of a Tatoeba pair, by its English sentence (as in ../shared/data/tatoeba-eng-fra)."""
    bucket = int(hashlib.md5(english.encode("utf-8")).hexdigest(), 16) % 40  # noqa: S324 (not security)
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def write_tatoeba_splits(src: IO[bytes], folder: Path) -> None:
    """manythings.org's fra.txt (English<TAB>French<TAB>attribution) as train/valid/test.tsv."""
    outs = {s: open(folder / f"{s}.tsv", "w", encoding="utf-8") for s in SPLITS}  # noqa: SIM115
    try:
        for n, raw in enumerate(src, 1):
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) < 2 or not cols[0].strip() or not cols[1].strip():
                raise CorpusError(
                    f"fra.txt:{n} is not English<TAB>French: the archive is not the expected one"
                )
            outs[tatoeba_split(cols[0])].write(f"{cols[0]}\t{cols[1]}\n")
    finally:
        for out in outs.values():
            out.close()


__all__ = [
    "BOS_ID",
    "EOS_ID",
    "FORMATS",
    "PAD_ID",
    "SPECIALS",
    "UNK_ID",
    "PairTokenizer",
    "Pairs",
    "SideTokenizer",
    "check_pair_config",
    "check_settings",
    "fingerprint",
    "group_references",
    "orient",
    "parse_direction",
    "pick_fields",
    "read_folder",
    "read_jsonl",
    "read_tsv",
    "split_files",
    "tatoeba_split",
    "write_tatoeba_splits",
]
