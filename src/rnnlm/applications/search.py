"""Semantic search over a corpus with a model's embeddings, and the `src/search.py` command.

    from rnnlm import LanguageModel
    from rnnlm.applications import SearchIndex

    lm = LanguageModel.load("outputs/train/runs/<run>/checkpoints/best.ckpt")
    index = SearchIndex.build(lm, "/path/to/corpus", split="paragraph")   # cached next to the ckpt
    for hit in index.search("a king speaks of war", top_k=5):
        print(hit.score, hit.passage.source, hit.passage.line, hit.passage.text)

The index file holds the passages, their embeddings and a key. The key is a SHA-256 over the
*contents* of everything the embeddings depend on: every corpus file's bytes, the model's weights
and vocabulary, and the settings (split, min_chars, pooling). A changed corpus or model gives a new
key and the index is rebuilt in place; an unchanged one is reused. Content hashes rather than
size + mtime (what the token cache uses): they see an edit that keeps both (same-second saves,
`git checkout`, copies with `cp -p`), they survive copying or touching files that did not change,
and hashing a few MB takes milliseconds next to embedding it. The weights are hashed, not the
checkpoint file, whose optimizer state changes when the weights do not.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from rnnlm.applications.embedding import embed
from rnnlm.data.sources import read_text
from rnnlm.errors import UserError

SPLITS = ("line", "paragraph")
INDEX_FORMAT = 1  # bumped when the index file's layout or the embedding procedure changes


@dataclass(frozen=True)
class Passage:
    text: str
    source: str  # the file, relative to the corpus folder (its name for a single file)
    line: int  # 1-based line of the passage's first line in that file


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float  # cosine similarity with the query, in [-1, 1]
    passage: Passage


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


def model_fingerprint(lm) -> str:  # noqa: ANN001
    """SHA-256 of the model's weights and the tokenizer's vocabulary."""
    h = hashlib.sha256(repr(lm.tokenizer.to_dict()).encode())
    for name, tensor in sorted(lm.model.state_dict().items()):
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def default_index_path(ckpt: Path, corpus: str | Path, split: str) -> Path:
    """`<ckpt folder>/search-index/<ckpt stem>-<corpus name>-<hash of its path>-<split>.pt`: one slot
    per checkpoint, corpus and split, overwritten when its content changes."""
    where = Path(corpus).expanduser().resolve()
    tag = hashlib.sha256(str(where).encode()).hexdigest()[:8]
    return ckpt.parent / "search-index" / f"{ckpt.stem}-{where.stem}-{tag}-{split}.pt"


class SearchIndex:
    """Passages of a corpus with their embeddings (N, H), unit rows: score = cosine similarity."""

    def __init__(
        self,
        lm,  # noqa: ANN001
        passages: list[Passage],
        embeddings: torch.Tensor,
        pooling: str = "mean",
        key: str = "",
        path: Path | None = None,
        built: bool = True,
    ) -> None:
        self.lm = lm
        self.passages = passages
        self.embeddings = embeddings
        self.pooling = pooling
        self.key = key
        self.path = path
        self.built = built  # False when read back from the cache

    @classmethod
    def build(
        cls,
        lm,  # noqa: ANN001
        corpus: str | Path,
        split: str = "paragraph",
        min_chars: int = 1,
        pooling: str = "mean",
        index_path: str | Path | None = None,
        rebuild: bool = False,
    ) -> SearchIndex:
        """Read the cached index at `index_path` if its key matches, else embed and write it.

        `index_path=None`: next to the checkpoint the model was loaded from (`default_index_path`),
        or no cache at all for a model built in memory.
        """
        passages, corpus_hash = read_passages(corpus, split, min_chars)
        key = hashlib.sha256(
            f"{INDEX_FORMAT}|{corpus_hash}|{model_fingerprint(lm)}|{split}|{min_chars}|{pooling}".encode()
        ).hexdigest()
        if index_path is None and lm.path is not None:
            index_path = default_index_path(lm.path, corpus, split)
        path = Path(index_path) if index_path is not None else None
        if path is not None and path.is_file() and not rebuild:
            try:
                cached = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a damaged index is rebuilt, never trusted
                cached = None
            if isinstance(cached, dict) and cached.get("key") == key:
                return cls(lm, passages, cached["embeddings"], pooling, key, path, built=False)
        embeddings = embed(lm, [p.text for p in passages], pooling=pooling)
        if path is not None:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(
                    {"key": key, "embeddings": embeddings, "num_passages": len(passages)}, tmp
                )
                os.replace(tmp, path)  # a reader never sees half a file
            except OSError as err:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise UserError(
                    f"cannot write the search index to {path} ({err.strerror or err}): "
                    "pass index_path=<a file in a writable folder>"
                ) from None
        return cls(lm, passages, embeddings, pooling, key, path, built=True)

    def __len__(self) -> int:
        return len(self.passages)

    def search(self, query: str, top_k: int = 5) -> list[Hit]:
        """The `top_k` passages most similar to `query`, best first (ties: corpus order)."""
        if top_k < 1:
            raise UserError(f"top_k={top_k} must be >= 1")
        if not query.strip():
            raise UserError('query is empty: pass query="some words"')
        q = embed(self.lm, [query.strip()], pooling=self.pooling)[0]
        scores = self.embeddings @ q  # (N,)
        k = min(top_k, len(self.passages))
        # A stable sort, so equal scores keep corpus order (topk's order among ties is unspecified).
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        return [Hit(r + 1, float(scores[i]), self.passages[int(i)]) for r, i in enumerate(order)]


def format_hits(hits: list[Hit], max_chars: int = 400) -> str:
    lines = []
    for hit in hits:
        p = hit.passage
        text = p.text if len(p.text) <= max_chars else p.text[: max_chars - 3] + "..."
        lines.append(f"{hit.rank}. score {hit.score:.4f}  {p.source}:{p.line}")
        lines.extend("    " + t for t in text.splitlines())
    return "\n".join(lines)


def search(cfg: DictConfig) -> list[Hit]:
    """`src/search.py`: build or reuse the index, print the top passages for the query."""
    from rnnlm.inference.device import resolve_device
    from rnnlm.inference.lm import LanguageModel

    if cfg.query is None or not str(cfg.query).strip():
        raise UserError('query is empty: pass query="some words"')
    for key, low in (("top_k", 1), ("max_chars", 1), ("min_chars", 0)):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{key}={value} must be an integer >= {low}")
    lm = LanguageModel.load(cfg.ckpt_path, device=resolve_device(cfg.device))
    t0 = time.perf_counter()
    index = SearchIndex.build(
        lm,
        str(cfg.corpus),
        split=cfg.split,
        min_chars=int(cfg.min_chars),
        pooling=cfg.pooling,
        index_path=cfg.index_path,
        rebuild=bool(cfg.rebuild),
    )
    how = (
        f"built in {time.perf_counter() - t0:.1f} s"
        if index.built
        else "reused (corpus and model unchanged)"
    )
    where = index.path if index.path is not None else "not cached"
    print(
        f"index: {len(index)} passages ({cfg.split}s), {how}: {where}", file=sys.stderr, flush=True
    )
    hits = index.search(str(cfg.query), top_k=int(cfg.top_k))
    print(format_hits(hits, int(cfg.max_chars)), flush=True)
    return hits
