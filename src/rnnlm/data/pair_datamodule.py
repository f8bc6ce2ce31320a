"""LightningDataModule of translation pairs: read, tokenise per side, cap; batches from pair_batches.py.

The batches (pair_batches.py) are dicts of `src` (B, S), `src_len` (B,), `tgt` (B, T: the target ids
then EOS, no BOS) and `index` (B,), right-padded with PAD; training batches are length-bucketed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from rnnlm import schema
from rnnlm.data.download import DATASETS, prepare_dataset
from rnnlm.data.pair_batches import LengthBatches, PairData, collate
from rnnlm.data.pair_hf import read_hf_pairs
from rnnlm.data.pairs import (
    UNK_ID,
    Pairs,
    PairTokenizer,
    check_settings,
    fingerprint,
    group_references,
    orient,
    parse_direction,
    read_folder,
)
from rnnlm.data.sources import SPLITS, CorpusError

log = logging.getLogger(__name__)


class PairDataModule(L.LightningDataModule):
    """Source -> target pairs of train/valid/test (data/pairs.py), tokenised per side or shared.

    `path` is a folder of `.tsv` / `.jsonl` splits; without one, `dataset=tatoeba_eng_fra` downloads the
    corpus once into `cache_dir` (`url`, `sha256` replace its location and checksum), or `format=hf`
    reads the Hugging Face dataset `hf_name`. The vocabularies come from the training split only (or
    `tokenizer_state`, a checkpoint's). `max_len` caps tokens per side: longer training pairs are
    dropped (and counted), longer validation/test sides truncated.
    """

    task = "translation"

    def __init__(
        self,
        path: str | None = None,
        dataset: str | None = None,
        url: str | None = None,
        sha256: str | None = None,
        cache_dir: str = "~/.cache/rnnlm",
        format: str = "tsv",
        languages: Sequence[str] = ("en", "fr"),
        direction: str | None = "en-fr",
        source_field: str = "source",
        target_field: str = "target",
        hf_name: str | None = None,
        hf_config: str | None = None,
        hf_splits: dict[str, str | None] | None = None,
        carve_fraction: float = 0.05,
        tokenizer: str = "word",
        shared_vocab: bool = False,
        vocab_size: int | None = None,
        min_freq: int = 1,
        max_vocab: int | None = None,
        max_len: int | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        bucket: bool = True,
        num_workers: int = 0,
        tokenizer_state: dict | None = None,
    ) -> None:
        super().__init__()
        schema.check("data", batch_size=batch_size, eval_batch_size=eval_batch_size)
        if max_len is not None and max_len < 1:
            raise CorpusError(f"data.max_len={max_len} must be >= 1 (or null: no cap)")
        check_settings(format, tokenizer, direction, list(languages))
        self.path, self.dataset, self.url, self.sha256 = path, dataset, url, sha256
        self.cache_dir, self.format = cache_dir, format
        self.swap = parse_direction(direction, list(languages))
        self.direction, self.languages = direction, list(languages)
        self.fields = (source_field, target_field)
        self.hf = {"name": hf_name, "config": hf_config, "splits": hf_splits}
        self.carve_fraction = carve_fraction
        self.kind, self.shared, self.vocab_size_wanted = tokenizer, shared_vocab, vocab_size
        self.min_freq, self.max_vocab, self.max_len = min_freq, max_vocab, max_len
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.bucket, self.num_workers = bucket, num_workers
        self._given = PairTokenizer.from_dict(tokenizer_state) if tokenizer_state else None
        self._seed = torch.initial_seed()  # the run's seed (set before the data module is built)
        self.tokenizer: PairTokenizer | None = None
        self.text: dict[str, Pairs] = {}
        self.data: dict[str, PairData] = {}
        self.dropped = 0
        self.corpus_fingerprint: str | None = None
        self._train_start: tuple[int, int | None] = (0, None)

    # -- loading ---------------------------------------------------------------------------------
    def _read(self) -> dict[str, Pairs]:
        if self.format == "hf":
            if not self.hf["name"]:
                raise CorpusError("data.format=hf needs data.hf_name (a Hub id or a local folder)")
            return read_hf_pairs(fields=self.fields, carve_fraction=self.carve_fraction, **self.hf)
        if self.path not in (None, ""):
            return read_folder(self.path, self.format, self.fields)
        if self.dataset:
            if DATASETS.get(self.dataset, DATASETS["tatoeba_eng_fra"]).suffix != ".tsv":
                pairs = [n for n, spec in DATASETS.items() if spec.suffix == ".tsv"]
                raise CorpusError(
                    f"data.dataset={self.dataset} is a language-model corpus, not pairs: use one "
                    f"of {', '.join(pairs)}, or data={self.dataset} for a language model"
                )
            folder = prepare_dataset(self.dataset, self.cache_dir, self.url, self.sha256)
            return read_folder(folder, "tsv", self.fields)
        raise CorpusError(
            "no pairs to read: set data.path to a folder of train/valid/test.tsv (or .jsonl), "
            "or use data=tatoeba_eng_fra"
        )

    def texts(self) -> dict[str, Pairs]:
        """Each split's (sources, targets) as read, in the configured direction (no tokenizing)."""
        if not self.text:
            self.text = orient(self._read(), self.swap)
            self.corpus_fingerprint = fingerprint(self.text)
        return self.text

    def load(self) -> PairTokenizer:
        """Read the pairs, train (or take) the tokenizer, encode every split. Idempotent."""
        if self.tokenizer is not None and self.data:
            return self.tokenizer
        text = self.texts()
        tok = self._given or PairTokenizer.train(
            self.kind,
            *text["train"],
            self.shared,
            self.min_freq,
            self.max_vocab,
            self.vocab_size_wanted,
        )
        cap = self.max_len
        for split in SPLITS:
            src = tok.source.encode_many(text[split][0])
            tgt = tok.target.encode_many(text[split][1])
            index = np.arange(len(src))
            if cap is not None and split == "train":
                index = np.array(
                    [i for i in index if len(src[i]) <= cap and len(tgt[i]) <= cap], dtype=np.int64
                )
                self.dropped = len(src) - len(index)
                src, tgt = [src[i] for i in index], [tgt[i] for i in index]
            elif cap is not None:
                src, tgt = [s[:cap] for s in src], [t[:cap] for t in tgt]
            self.data[split] = PairData(src, tgt, index)
        self.tokenizer = tok
        log.info(
            "data: pairs %s, %s tokenizer%s, vocabulary %d -> %d, pairs %s%s",
            self.direction or "in file order",
            tok.source.kind,
            " (shared)" if tok.shared else "",
            tok.src_vocab,
            tok.tgt_vocab,
            {s: len(self.data[s]) for s in SPLITS},
            f", {self.dropped} training pairs longer than data.max_len={cap} dropped"
            if self.dropped
            else "",
        )
        return tok

    def check_layout(self, splits: tuple[str, ...] = SPLITS) -> None:
        """Fail early if the length cap left a split without pairs."""
        self.load()
        for split in splits:
            if len(self.data[split]) == 0:
                raise CorpusError(
                    f"data.max_len={self.max_len} drops every {split} pair: raise data.max_len (or set null)"
                )

    @property
    def unknown_counts(self) -> dict[str, int]:
        self.load()
        return {
            s: sum(r.count(UNK_ID) for rows in (d.src, d.tgt) for r in rows)
            for s, d in self.data.items()
        }

    def references(self, split: str) -> list[tuple[str, list[str]]]:
        """The split's distinct sources in first-seen order, each with all its targets."""
        return group_references(*self.texts()[split])

    def encode_source(self, texts: Sequence[str]) -> list[list[int]]:
        """Source ids of `texts`, capped at max_len (no BOS/EOS)."""
        ids = self.load().source.encode_many(list(texts))
        return ids if self.max_len is None else [i[: self.max_len] for i in ids]

    # -- Lightning hooks ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: str | None = None) -> None:
        self.load()

    @property
    def trainer_settings(self) -> dict[str, bool]:
        """The batch sampler shards by rank itself (DDP): Lightning must not replace it."""
        return {"use_distributed_sampler": False}

    def lr_scale(self, batch: object) -> float:
        return 1.0

    def resume_train_at(self, batch: int, epoch: int | None = None) -> None:
        """The next pass over `epoch`'s training batches starts at `batch` (resuming mid-epoch)."""
        self._train_start = (batch, epoch)

    def _take_train_start(self, epoch: int) -> int:
        start, wanted = self._train_start
        if wanted is not None and wanted != epoch:
            return 0
        self._train_start = (0, None)
        return start

    def _loader(self, split: str) -> DataLoader:
        data = self.data[split]
        lengths = np.array(
            [len(s) * 4096 + len(t) for s, t in zip(data.src, data.tgt, strict=True)]
        )
        train = split == "train"
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        sampler = LengthBatches(
            lengths,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            bucket=self.bucket,
            seed=self._seed,
            take_start=self._take_train_start if train else lambda epoch: 0,
            rank=rank,
            world=world,
        )
        return DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.load()
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        self.load()
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        self.load()
        return self._loader("test")


__all__ = ["PairDataModule"]
