"""A corpus as passages: every non-blank line, or every block between blank lines, with where each
starts (file, line), and a SHA-256 of the files' contents (the search index's cache key)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rnnlm.data.sources import read_text
from rnnlm.errors import UserError

SPLITS = ("line", "paragraph")


@dataclass(frozen=True)
class Passage:
    text: str
    source: str  # the file, relative to the corpus folder (its name for a single file)
    line: int  # 1-based line of the passage's first line in that file


def split_passages(
    text: str, split: str = "paragraph", min_chars: int = 1
) -> list[tuple[int, str]]:
    """(1-based first line, passage) pairs: every non-blank line (`split="line"`), or every block of
    lines between blank lines (`split="paragraph"`). Lines are stripped of surrounding whitespace;
    passages shorter than `min_chars` characters are left out."""
    if split not in SPLITS:
        raise UserError(f"split={split!r} is not known; choose one of {list(SPLITS)}")
    out: list[tuple[int, str]] = []
    block: list[str] = []
    first = 0
    for n, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if split == "line":
            if line:
                out.append((n, line))
            continue
        if line:
            if not block:
                first = n
            block.append(line)
        elif block:
            out.append((first, "\n".join(block)))
            block = []
    if block:
        out.append((first, "\n".join(block)))
    return [(n, p) for n, p in out if len(p) >= min_chars]


def corpus_files(corpus: str | Path) -> tuple[Path, list[Path]]:
    """(root folder, files): a file alone, or every `*.txt` under a folder (sorted)."""
    path = Path(corpus).expanduser()
    if not path.exists():
        raise UserError(
            f"corpus={corpus} does not exist: pass a text file or a folder of .txt files"
        )
    # absolute(), not resolve(): a symlinked file keeps its name under the root it was found in
    path = path.absolute()
    if path.is_file():
        return path.parent, [path]
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise UserError(
            f"corpus={corpus} is a folder without .txt files: pass a text file or a folder of them"
        )
    return path, files


def read_passages(
    corpus: str | Path, split: str = "paragraph", min_chars: int = 1
) -> tuple[list[Passage], str]:
    """The passages of a text file or a folder of `.txt` files, and a SHA-256 of the files' contents."""
    root, files = corpus_files(corpus)
    h = hashlib.sha256()
    passages: list[Passage] = []
    for f in files:
        data = f.read_bytes()
        name = str(f.relative_to(root))
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
        passages.extend(
            # an undecodable byte shows as U+FFFD in its passage rather than stopping the search
            Passage(p, name, n)
            for n, p in split_passages(read_text(f, "replace"), split, min_chars)
        )
    if not passages:
        raise UserError(
            f"corpus={corpus} has no passages: its files are empty"
            + (
                f" or hold none of at least min_chars={min_chars} characters"
                if min_chars > 1
                else ""
            )
        )
    return passages, h.hexdigest()
