"""Search over a corpus's passages, and the `src/search.py` command: by a model's embeddings
(`method=embed`), by word overlap (`bm25`, applications/lexical.py, no model needed), or both
(`hybrid`: the two rankings merged by reciprocal rank fusion).

    from rnnlm import LanguageModel
    from rnnlm.applications import SearchIndex

    lm = LanguageModel.load("outputs/train/runs/<run>/checkpoints/best.ckpt")
    index = SearchIndex.build(lm, "/path/to/corpus", split="paragraph", method="hybrid")
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

import numpy as np
import torch
from omegaconf import DictConfig

from rnnlm.applications.embedding import embed
from rnnlm.applications.lexical import BM25, reciprocal_rank_fusion
from rnnlm.applications.passages import Passage, read_passages
from rnnlm.errors import UserError

METHODS = ("embed", "bm25", "hybrid")
INDEX_FORMAT = 1  # bumped when the index file's layout or the embedding procedure changes


@dataclass(frozen=True)
class Hit:
    rank: int
    # embed: cosine similarity with the query, in [-1, 1]; bm25: the BM25 score (>= 0);
    # hybrid: the fused score, sum of 1 / (60 + rank) over the two methods
    score: float
    passage: Passage


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
    """Passages of a corpus with their embeddings (N, H), unit rows (embed, hybrid) and a BM25
    index (bm25, hybrid)."""

    def __init__(
        self,
        lm,  # noqa: ANN001
        passages: list[Passage],
        embeddings: torch.Tensor | None,
        pooling: str = "mean",
        key: str = "",
        path: Path | None = None,
        built: bool = True,
        method: str = "embed",
    ) -> None:
        self.lm = lm
        self.passages = passages
        self.embeddings = embeddings
        self.pooling = pooling
        self.key = key
        self.path = path
        self.built = built  # False when read back from the cache
        self.method = method
        self.bm25 = BM25([p.text for p in passages]) if method != "embed" else None

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
        method: str = "embed",
    ) -> SearchIndex:
        """Read the cached index at `index_path` if its key matches, else embed and write it.

        `index_path=None`: next to the checkpoint the model was loaded from (`default_index_path`),
        or no cache at all for a model built in memory. `method="bm25"` embeds nothing (`lm` may be
        None): BM25 indexes a few thousand passages in milliseconds, so it is not cached.
        """
        if method not in METHODS:
            raise UserError(
                f"method={method!r} is not a search method; choose one of {list(METHODS)}"
            )
        passages, corpus_hash = read_passages(corpus, split, min_chars)
        if method == "bm25":
            return cls(lm, passages, None, pooling, corpus_hash, None, built=True, method=method)
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
                return cls(lm, passages, cached["embeddings"], pooling, key, path, False, method)
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
        return cls(lm, passages, embeddings, pooling, key, path, built=True, method=method)

    def __len__(self) -> int:
        return len(self.passages)

    def search(self, query: str, top_k: int = 5) -> list[Hit]:
        """The `top_k` passages most similar to `query`, best first (ties: corpus order)."""
        if top_k < 1:
            raise UserError(f"top_k={top_k} must be >= 1")
        if not query.strip():
            raise UserError('query is empty: pass query="some words"')
        scores = torch.from_numpy(self.scores(query.strip()))  # (N,)
        k = min(top_k, len(self.passages))
        # A stable sort, so equal scores keep corpus order (topk's order among ties is unspecified).
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        return [Hit(r + 1, float(scores[i]), self.passages[int(i)]) for r, i in enumerate(order)]

    def scores(self, query: str) -> np.ndarray:
        """(N,) float64: how well each passage matches `query` by this index's method."""
        lexical = self.bm25.scores(query) if self.bm25 is not None else None
        if self.method == "bm25":
            return lexical
        q = embed(self.lm, [query], pooling=self.pooling)[0]
        cosine = (self.embeddings @ q).double().numpy()
        return cosine if lexical is None else reciprocal_rank_fusion(cosine, lexical)


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
    method = cfg.get("method", "embed")
    if method not in METHODS:
        raise UserError(
            f"method={method} is not a search method: choose one of {', '.join(METHODS)}"
        )
    if cfg.ckpt_path is None and method != "bm25":
        raise UserError(
            f"method={method} needs a model: pass ckpt_path=<file>, or search without one by method=bm25"
        )
    lm = None
    if method != "bm25":
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
        method=method,
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
