"""Synthetic corpora for the benchmark: Zipf-distributed words over a vocabulary of any size.

`zipf_corpus(folder, vocab_size, train_mb)` writes train.txt, valid.txt and test.txt of whitespace-separated
pseudo-words (lines of about 20 words) whose frequencies follow Zipf's law (the r-th most frequent word
has probability proportional to 1/r). Every word of the vocabulary occurs at least once in train.txt,
so a word tokenizer built on it has exactly `vocab_size` + 2 (<unk>, <eos>) types. About 2% of the words
carry an accented letter, so the text is UTF-8 and not pure ASCII, like real corpora.

Deterministic for a given seed; a folder already holding the same corpus (see `stamp.json`) is reused.

    python bench/corpus.py outputs/bench/work/zipf --vocab 250000 --train-mb 100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
ACCENTED = ["é", "ü", "ñ", "ø", "ç"]


def pseudo_words(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct lowercase words, short ones first (bijective base 26: a..z, aa..zz, aaa..)."""
    words = []
    for r in range(n):
        chars = []
        r += 1
        while r > 0:
            r -= 1
            chars.append(LETTERS[r % 26])
            r //= 26
        words.append("".join(reversed(chars)))
    # Give ~2% of the words an accented letter (appended, so words stay distinct).
    for i in np.flatnonzero(rng.random(n) < 0.02):
        words[i] = words[i] + ACCENTED[i % len(ACCENTED)]
    return words


def _write_split(
    path: Path,
    words: np.ndarray,
    cdf: np.ndarray,
    target_bytes: int,
    rng: np.random.Generator,
    prefix: str = "",
) -> int:
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        if prefix:
            f.write(prefix)
            written += len(prefix.encode("utf-8"))
        while written < target_bytes:
            n = 500_000
            ids = np.searchsorted(cdf, rng.random(n), side="right")
            toks = words[np.minimum(ids, len(words) - 1)]
            # A line break after ~1 word in 20, a space otherwise.
            seps = np.where(rng.random(n) < 0.05, "\n", " ")
            seps[-1] = "\n"
            text = "".join(np.char.add(toks, seps).tolist())
            data = text.encode("utf-8")
            if written + len(data) > target_bytes:  # stop at a line end near the target size
                cut = data.find(b"\n", max(target_bytes - written, 0))
                data = data[: cut + 1] if cut >= 0 else data
            f.write(data.decode("utf-8"))
            written += len(data)
    return written


def zipf_corpus(
    folder: str | Path,
    vocab_size: int = 250_000,
    train_mb: float = 100.0,
    eval_mb: float = 1.0,
    exponent: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write (or reuse) a Zipf corpus in `folder`; returns the folder."""
    folder = Path(folder)
    spec = {
        "vocab_size": vocab_size,
        "train_mb": train_mb,
        "eval_mb": eval_mb,
        "exponent": exponent,
        "seed": seed,
        "version": 1,
    }
    stamp = folder / "stamp.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    words = np.array(pseudo_words(vocab_size, rng))
    ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
    cdf = np.cumsum(ranks**-exponent)
    cdf /= cdf[-1]
    # Every word once, 20 to a line, at the start of train.txt: the vocabulary is all of it.
    order = rng.permutation(vocab_size)
    lines = [" ".join(words[order[i : i + 20]].tolist()) for i in range(0, vocab_size, 20)]
    header = "\n".join(lines) + "\n"
    mb = 1_000_000
    sizes = {"train": int(train_mb * mb), "valid": int(eval_mb * mb), "test": int(eval_mb * mb)}
    for split, nbytes in sizes.items():
        _write_split(
            folder / f"{split}.txt",
            words,
            cdf,
            nbytes,
            rng,
            prefix=header if split == "train" else "",
        )
    stamp.write_text(json.dumps(spec))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--vocab", type=int, default=250_000)
    parser.add_argument("--train-mb", type=float, default=100.0)
    parser.add_argument("--eval-mb", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    zipf_corpus(args.folder, args.vocab, args.train_mb, args.eval_mb, seed=args.seed)
    print(f"{args.folder}: ready in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
