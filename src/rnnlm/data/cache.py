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
        ids = {s: np.load(entry / f"{s}.npy", mmap_mode="r") for s in SPLITS}
        meta = json.loads((entry / "meta.json").read_text())
        return tokenizer, ids, meta

    def get_or_build(
        self, key: str, build: Callable[[], tuple[Tokenizer, dict[str, np.ndarray], dict]]
    ) -> tuple[Tokenizer, dict[str, np.ndarray], dict, bool]:
        """The cached entry, or `build()` written to the cache; the last item says whether it was a hit."""
        hit = self.load(key)
        if hit is not None:
            return (*hit, True)
        tokenizer, ids, meta = build()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            (tmp / "tokenizer.json").write_text(json.dumps(tokenizer.to_dict()))
            for split, arr in ids.items():
                np.save(tmp / f"{split}.npy", np.asarray(arr, dtype=np.int32))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            os.rename(tmp, self.root / key)
        except OSError:
            # Another process finished the same entry first (or the disk refused): use what is there.
            shutil.rmtree(tmp, ignore_errors=True)
            hit = self.load(key)
            if hit is None:
                raise
            return (*hit, True)
        return (*self.load(key), False)  # type: ignore[misc]
