"""Token ids computed once per corpus + tokenizer and kept on disk, so a second run does not tokenize.

Layout of one entry, `<cache_dir>/tokens/<key>/`: `tokenizer.json` (the vocabulary), `<split>.npy`
(int32 ids, read back memory-mapped) and `meta.json` (token and unknown-token counts). An entry is
written into a temporary folder and renamed into place, so a killed run never leaves half an entry and
concurrent ranks cannot read one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnnlm.data.sources import SPLITS
from rnnlm.data.tokenizers import Tokenizer, tokenizer_from_dict


def cache_key(fingerprint: str, tokenizer_spec: dict) -> str:
    spec = json.dumps(tokenizer_spec, sort_keys=True)
    return hashlib.sha256(f"{fingerprint}|{spec}".encode()).hexdigest()[:20]


class TokenCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser() / "tokens"

    def load(self, key: str) -> tuple[Tokenizer, dict[str, np.ndarray], dict] | None:
        entry = self.root / key
        if not (entry / "meta.json").is_file():
            return None
        tokenizer = tokenizer_from_dict(json.loads((entry / "tokenizer.json").read_text()))
        # Copy-on-write mapping: shared, read from disk on demand, and writable as torch expects.
        ids = {s: np.load(entry / f"{s}.npy", mmap_mode="c") for s in SPLITS}
        meta = json.loads((entry / "meta.json").read_text())
        return tokenizer, ids, meta

    def get_or_build(
        self, key: str, build: Callable[[Path], tuple[Tokenizer, dict]]
    ) -> tuple[Tokenizer, dict[str, np.ndarray], dict, bool]:
        """The cached entry, or one built by `build(folder)`; the last item says whether it was a hit.

        `build` writes `<split>.npy` into `folder` itself (see `IdsWriter`), so the ids of a large corpus
        go to disk as they are made, and returns the tokenizer and the meta dict.
        """
        hit = self.load(key)
        if hit is not None:
            return (*hit, True)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            tokenizer, meta = build(tmp)
            (tmp / "tokenizer.json").write_text(json.dumps(tokenizer.to_dict()))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            os.rename(tmp, self.root / key)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if not isinstance(err, OSError):
                raise
            # Another process finished the same entry first (or the disk refused): use what is there.
            hit = self.load(key)
            if hit is None:
                raise
            return (*hit, True)
        return (*self.load(key), False)  # type: ignore[misc]


class IdsWriter:
    """Writes token ids to a `.npy` file (int32, 1-D) piece by piece, never holding them all in memory.

    The header is written last, with the final length; it takes a fixed HEADER_BYTES so the data can be
    written before the length is known. `np.load` (memory-mapped or not) reads the file as usual.

        with IdsWriter(folder / "train.npy") as w:
            for piece in pieces:
                w.write(ids_of(piece))
    """

    HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + the header dict, padded; 64-aligned

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._f.write(b"\0" * self.HEADER_BYTES)
        self.count = 0

    def write(self, ids: np.ndarray) -> None:
        arr = np.ascontiguousarray(ids, dtype="<i4")
        arr.tofile(self._f)
        self.count += arr.size

    def close(self) -> None:
        if self._f.closed:
            return
        header = f"{{'descr': '<i4', 'fortran_order': False, 'shape': ({self.count},), }}"
        room = self.HEADER_BYTES - 10 - 1  # the dict, its padding and the closing newline
        self._f.seek(0)
        self._f.write(
            b"\x93NUMPY\x01\x00"
            + struct.pack("<H", self.HEADER_BYTES - 10)
            + header.ljust(room).encode("latin1")
            + b"\n"
        )
        self._f.close()

    def __enter__(self) -> IdsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
