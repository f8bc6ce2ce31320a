"""LightningDataModule for a language-model corpus: tokenise once (cached), lay out, serve windows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from rnnlm import schema
from rnnlm.data.download import prepare_dataset
from rnnlm.data.hf_datasets import prepare_hf
from rnnlm.data.layout import VariableWindows, Windows, check_bptt, check_fits, shard, windows
from rnnlm.data.sources import SPLITS, Corpus, load_corpus, load_text_folder
from rnnlm.data.token_cache import IdsWriter, TokenCache, cache_key
from rnnlm.data.tokenizers import (
    Tokenizer,
    WordTokenizer,
    tokenizer_from_dict,
    train_tokenizer,
)

log = logging.getLogger(__name__)


class StartAt(Sampler[int]):
    """Indices 0..n-1 in order; each pass starts at `take_start()` (the window to resume at, or 0).

    Resuming mid-epoch E with variable-length windows, Lightning builds (and starts iterating) the
    training loader once before the loop state is restored, over epoch 0's windows, then again for
    epoch E: `take_start` skips the windows done only in the pass over epoch E's windows. `len` stays
    n so Lightning's batch counters, restored from the checkpoint, end the epoch where the
    uninterrupted run would have.
    """

    def __init__(self, n: int, take_start: Callable[[], int] = lambda: 0) -> None:
        self.n, self.take_start = n, take_start

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.take_start(), self.n))


class LMDataModule(L.LightningDataModule):
    """Token streams of the train/valid/test splits, read as (B, T) windows in order.

    `path=None` uses the bundled Shakespeare plays, or with `dataset=<name>` a standard corpus downloaded
    into `cache_dir` on first use (`url` and `sha256` replace its published location and checksum; a
    `path` wins over `dataset`), or with `hf_name` a Hugging Face dataset (data/hf_datasets.py). Pass `tokenizer_state` (from a checkpoint) to read a corpus with an
    existing vocabulary instead of building one from its training split.
    Under DDP each rank reads its own contiguous shard of each split, all shards of equal length and
    aligned to the columns, so W ranks of `batch_size` B read what one process of W*B reads.
    With `variable_bptt=True` training windows vary in length around `bptt` (AWD-LSTM), drawn anew each
    epoch from the run's seed and the epoch; validation and test keep windows of `bptt`.
    """

    def __init__(
        self,
        path: str | None = None,
        tokenizer: str = "char",
        batch_size: int = 32,
        bptt: int = 128,
        eval_batch_size: int | None = None,
        min_freq: int = 1,
        max_vocab: int | None = None,
        cache_dir: str = "~/.cache/rnnlm",
        tokenizer_state: dict | None = None,
        encoding_errors: str = "strict",
        vocab_size: int | None = None,
        variable_bptt: bool = False,
        dataset: str | None = None,
        url: str | None = None,
        sha256: str | None = None,
        hf_name: str | None = None,
        hf_config: str | None = None,
        hf_revision: str | None = None,
        text_field: str = "text",
        hf_splits: dict[str, str | None] | None = None,
        carve_fraction: float = 0.05,
    ) -> None:
        super().__init__()
        schema.check("data", batch_size=batch_size, eval_batch_size=eval_batch_size)
        check_bptt(bptt)
        self.path = path
        self.tokenizer_kind = tokenizer_state["kind"] if tokenizer_state else tokenizer
        self.batch_size = batch_size
        self.bptt = bptt
        self.eval_batch_size = eval_batch_size or batch_size
        self.min_freq = min_freq
        self.max_vocab = max_vocab
        self.encoding_errors = encoding_errors
        self.vocab_size_wanted = vocab_size
        self.variable_bptt = variable_bptt
        self.dataset, self.url, self.sha256 = dataset, url, sha256
        schema.check("data", carve_fraction=carve_fraction)
        self.hf = (
            {
                "name": hf_name,
                "config": hf_config,
                "revision": hf_revision,
                "text_field": text_field,
                "splits": dict(hf_splits) if hf_splits else None,
                "carve_fraction": carve_fraction,
            }
            if hf_name
            else None
        )
        self.cache_dir = cache_dir
        self._bptt_seed = (
            torch.initial_seed()
        )  # the run's seed (set before the data module is built)
        self._train_data: torch.Tensor | None = None
        self.cache = TokenCache(cache_dir)
        self._given_tokenizer = tokenizer_from_dict(tokenizer_state) if tokenizer_state else None
        self.tokenizer: Tokenizer | None = None
        self.ids: dict[str, np.ndarray] = {}
        self.meta: dict = {}
        self.windows: dict[str, Windows] = {}
        self._train_start = 0
        self._train_start_epoch: int | None = None
        self.corpus_fingerprint: str | None = None

    # -- loading ---------------------------------------------------------------------------------
    def load(self) -> Tokenizer:
        """Tokenise the corpus (or read the cache). Idempotent; every process may call it."""
        if self.tokenizer is not None and self.ids:
            return self.tokenizer
        if self.path in (None, "") and self.hf:
            corpus = load_text_folder(prepare_hf(cache_dir=self.cache_dir, **self.hf))
        elif self.path in (None, "") and self.dataset:
            folder = prepare_dataset(self.dataset, self.cache_dir, self.url, self.sha256)
            corpus = load_text_folder(folder, self.encoding_errors)
        else:
            corpus = load_corpus(self.path, self.encoding_errors)
        if self._given_tokenizer is not None:
            spec = {"vocab": cache_key("", self._given_tokenizer.to_dict())}
        else:
            spec = {
                "kind": self.tokenizer_kind,
                "min_freq": self.min_freq,
                "max_vocab": self.max_vocab,
            }
            if self.tokenizer_kind == "bpe":
                spec["vocab_size"] = self.vocab_size_wanted
        self.corpus_fingerprint = corpus.fingerprint  # kept in checkpoints: a resume checks it
        key = cache_key(corpus.fingerprint, spec)
        tok, ids, meta, hit = self.cache.get_or_build(
            key, lambda folder: self._tokenize(corpus, folder)
        )
        self.tokenizer, self.ids, self.meta = tok, ids, meta
        log.info(
            "data: %s, %s tokenizer, vocabulary %d, tokens %s%s",
            corpus.name,
            tok.kind,
            tok.vocab_size,
            {s: len(ids[s]) for s in SPLITS},
            " (token cache hit)" if hit else f" (tokenised, cached under {self.cache.root / key})",
        )
        return tok

    def check_layout(self, splits: tuple[str, ...] = SPLITS) -> None:
        """Fail early, with the sizes, if a split is too short for its batch layout."""
        self.load()
        for split in splits:
            check_fits(len(self.ids[split]), self._split_batch(split), self.bptt, split)

    def _tokenize(self, corpus: Corpus, folder: Path) -> tuple[Tokenizer, dict]:
        """Build the vocabulary (one pass over train) and write each split's ids to `folder`.

        The text streams through in pieces of a few MB, so memory stays bounded whatever the corpus
        size; the ids go straight to `<split>.npy`.
        """
        tokens, unknown = {}, {}
        splits = list(SPLITS)
        tok = self._given_tokenizer
        if tok is None and self.tokenizer_kind == "word":
            # One pass over the training text: vocabulary and (provisional) ids together.
            raw = folder / "train.provisional.npy"
            with IdsWriter(raw) as writer:
                tok, remap, unknown["train"] = WordTokenizer.train_and_encode(
                    corpus.pieces("train"), writer.write, self.min_freq, self.max_vocab
                )
            provisional = np.load(raw, mmap_mode="r")
            with IdsWriter(folder / "train.npy") as writer:
                for start in range(0, len(provisional), 1 << 22):
                    writer.write(remap[provisional[start : start + (1 << 22)]])
            tokens["train"] = writer.count
            del provisional
            raw.unlink()
            splits.remove("train")
        elif tok is None:
            tok = train_tokenizer(
                self.tokenizer_kind,
                corpus.pieces("train"),
                self.min_freq,
                self.max_vocab,
                self.vocab_size_wanted,
            )
        for split in splits:
            unknown[split] = 0
            with IdsWriter(folder / f"{split}.npy") as writer:
                for piece in corpus.pieces(split):
                    ids, missing = tok.encode_array(piece)
                    writer.write(ids)
                    unknown[split] += missing
            tokens[split] = writer.count
        for split in SPLITS:
            if tokens[split] == 0:
                raise ValueError(f"the {split} split has no tokens: every split needs text")
        meta = {"corpus": corpus.name, "tokens": tokens, "unknown": unknown}
        return tok, meta

    def _split_batch(self, split: str) -> int:
        return self.batch_size if split == "train" else self.eval_batch_size

    @property
    def vocab_size(self) -> int:
        return self.load().vocab_size

    @property
    def unknown_counts(self) -> dict[str, int]:
        self.load()
        return dict(self.meta.get("unknown", {}))

    # -- Lightning hooks ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: str | None = None) -> None:
        self.load()
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        for split in SPLITS:
            # The cached int32 ids, memory-mapped: no copy of the corpus; windows widen one at a time.
            stream = torch.from_numpy(self.ids[split])
            if world > 1:  # the global rank and world size: nodes x devices per node
                stream = shard(stream, rank, world, self._split_batch(split))
                n = len(stream)
                log.info(
                    "data: rank %d/%d reads %s tokens [%d, %d)",
                    rank,
                    world,
                    split,
                    rank * n,
                    (rank + 1) * n,
                )
            self.windows[split] = windows(stream, self._split_batch(split), self.bptt, split)
            if split == "train" and self.variable_bptt:
                self._train_data = self.windows[split].data

    def teardown(self, stage: str | None = None) -> None:
        # Close the memory-mapped token files now rather than whenever the Trainer <-> DataModule
        # reference cycle is collected: a sweep of many jobs in one process must not pile them up.
        self.ids, self.windows = {}, {}
        self._train_data = None

    def resume_train_at(self, window: int, epoch: int | None = None) -> None:
        """The next pass over the training split (over `epoch`'s windows, with variable-length ones)
        starts at `window` (resuming mid-epoch)."""
        self._train_start, self._train_start_epoch = window, epoch

    def _take_train_start(self, epoch: int | None) -> int:
        """The window a pass over `epoch`'s windows starts at; taken once."""
        if self._train_start_epoch is not None and epoch not in (None, self._train_start_epoch):
            return 0  # another epoch's windows: the resumed epoch's loader comes later
        start, self._train_start, self._train_start_epoch = self._train_start, 0, None
        return start

    def _loader(self, split: str, take_start: Callable[[], int] = lambda: 0) -> DataLoader:
        # batch_size=None: each item already is a (B, T) window, read in order. The loader's own
        # generator keeps it from drawing on the global RNG (exact resume relies on that).
        data = self.windows[split]
        return DataLoader(
            data,
            batch_size=None,
            sampler=StartAt(len(data), take_start),
            generator=torch.Generator().manual_seed(0),
        )

    def lr_scale(self, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
        """The learning-rate factor of a training window: its length / bptt with variable-length BPTT
        (AWD-LSTM: short windows do not weigh as much as full ones), else 1."""
        return batch[0].size(1) / self.bptt if self.variable_bptt else 1.0

    @property
    def trainer_settings(self) -> dict[str, int]:
        """What the Trainer must do for this layout: variable-length windows are drawn anew each epoch,
        so the training loader is rebuilt every epoch."""
        return {"reload_dataloaders_every_n_epochs": 1} if self.variable_bptt else {}

    def train_windows(self, epoch: int) -> Windows:
        """This epoch's training windows: fixed, or (variable_bptt) drawn from the seed and the epoch."""
        if not self.variable_bptt:
            return self.windows["train"]
        rng = np.random.default_rng([self._bptt_seed, epoch])
        return VariableWindows(self._train_data, self.bptt, rng)

    def train_dataloader(self) -> DataLoader:
        epoch = None  # fixed windows: the same in every epoch
        if self.variable_bptt:
            # Lightning reloads this loader every epoch (the trainer is built with
            # reload_dataloaders_every_n_epochs=1 for it), so each epoch draws its own lengths.
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            self.windows["train"] = self.train_windows(epoch)
        return self._loader("train", lambda: self._take_train_start(epoch))

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
