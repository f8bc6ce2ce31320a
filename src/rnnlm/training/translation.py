"""The LightningModule of translation: a source -> target model trained on pairs, scored with BLEU/chrF.

It is the language-model module (training/module.py) with another step: a batch is a set of sentence
pairs (data/pair_datamodule.py), the loss is the cross-entropy of the target tokens given the source, and
nothing is carried from batch to batch. Everything else is shared: optimisers and schedules, clipping
and the non-finite check, NT-ASGD, checkpoints and exact mid-epoch resume (the data module skips the
batches an epoch has done), the time budget. After each validation the module translates the validation
sources (greedy, or a beam: `decode.val_beam_size`) and logs `val/bleu` and `val/chrf` against every
reference of each source; the test translates with `decode.beam_size`. A fixed set of sentences and their
translations goes to TensorBoard's TEXT tab after every validation.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnlm.data.pair_tokenizer import SPECIALS, PairTokenizer
from rnnlm.errors import UserError
from rnnlm.inference.bleu import corpus_scores
from rnnlm.inference.translator import TASK, build_translation_model, check_decoding, translate_ids
from rnnlm.training.module import LMModule
from rnnlm.training.trackers import log_sample

log = logging.getLogger(__name__)
PAD_ID = SPECIALS.index("<pad>")

# Decoding during training (the `decode:` block of train.yaml); src/translate.py has its own keys.
DECODE_DEFAULTS: dict[str, Any] = {
    "beam_size": 5,  # the test split's translations
    "val_beam_size": 1,  # each validation's (greedy: fast)
    "length_penalty": 0.6,
    "max_len": 128,
    "batch_size": 128,
    "val_sentences": None,  # validate BLEU on the first n distinct sources only (null: all)
    "samples": 8,  # sentences shown in TensorBoard after each validation
}


class TranslationModule(LMModule):
    """Trains a translation model (`model`: an encoder-decoder, or a language model that then reads
    `source <sep> target`) with the mean cross-entropy per target token."""

    task = TASK

    def __init__(
        self,
        model: dict,
        optim: dict,
        src_vocab: int,
        tgt_vocab: int,
        shared: bool = False,
        scheduler: dict | None = None,
        tokenizer: Any = None,
        config: dict | None = None,
        detect_nonfinite: bool = True,
        compile: bool = False,
        decode: dict | None = None,
    ) -> None:
        super().__init__(
            model=model,
            optim=optim,
            vocab_size=tgt_vocab,
            scheduler=scheduler,
            tokenizer=tokenizer,
            config=config,
            detect_nonfinite=detect_nonfinite,
            compile=compile,
        )
        self.example_input_array = None  # the summary's per-token FLOPs are a language model's
        self.decoding = {**DECODE_DEFAULTS, **(decode or {})}
        d = self.decoding
        try:
            for beam in (d["beam_size"], d["val_beam_size"]):
                check_decoding(beam, d["max_len"], d["length_penalty"])
        except UserError as err:
            raise UserError(f"decode: {err}") from None
        self.best_val_bleu = -math.inf
        self.scores: dict[str, dict[str, float]] = {}  # the last scores of each split

    def build_model(self, model: dict, vocab_size: int) -> nn.Module:
        hp = self.hparams
        return build_translation_model(model, hp.src_vocab, hp.tgt_vocab, bool(hp.shared))

    def batch_tokens(self, batch: dict[str, Tensor]) -> int:
        return int(batch["tgt"].ne(PAD_ID).sum())

    def forward(self, src: Tensor, src_len: Tensor, tgt: Tensor) -> Tensor:  # type: ignore[override]
        """The summed cross-entropy of the targets (B, T) given the sources (B, S)."""
        return self.model.nll(src, src_len, tgt, "sum")

    def _step(self, stage: str, batch: dict[str, Tensor]) -> tuple[Tensor, int]:  # type: ignore[override]
        reduction = "mean" if stage == "train" else "sum"
        loss = self._nll(batch["src"], batch["src_len"], batch["tgt"], reduction)
        n = self.batch_tokens(batch)
        if stage != "train":
            self.mean_loss[f"{stage}_"].update(loss, n)
        return loss, n

    # -- BLEU and chrF of a split's translations -------------------------------------------------------
    def _translate_split(self, split: str, beam_size: int, limit: int | None) -> dict[str, float]:
        datamodule = self.trainer.datamodule
        refs = datamodule.references(split)
        if limit:
            refs = refs[:limit]
        sources = datamodule.encode_source([src for src, _ in refs])
        d = self.decoding
        with torch.autocast(self.device.type, enabled=False):
            ids = translate_ids(
                self.model, sources, beam_size, d["length_penalty"], d["max_len"], d["batch_size"]
            )
        hyps = [self.tokenizer.target.decode(h) for h in ids]
        scores = corpus_scores(hyps, [targets for _, targets in refs])
        self.scores[split] = scores
        for name, value in scores.items():
            self.log(f"{'val' if split == 'valid' else split}/{name}", value)
        if split == "valid" and d["samples"]:
            shown = [
                f"{src}\n  -> {hyp}\n  (reference: {targets[0]})"
                for (src, targets), hyp in list(zip(refs, hyps, strict=True))[: d["samples"]]
            ]
            text = "\n".join(shown)
            if self.global_rank == 0 and self._trainer is not None:
                log_sample(self.trainer.loggers, text, self.global_step)
        return scores

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:  # translated with the weights validation scores
            d = self.decoding
            scores = self._translate_split("valid", d["val_beam_size"], d["val_sentences"])
            if math.isfinite(scores["bleu"]):
                self.best_val_bleu = max(self.best_val_bleu, scores["bleu"])
                self.log("val/best_bleu", self.best_val_bleu)
        super().on_validation_epoch_end()

    def on_test_epoch_end(self) -> None:
        self._translate_split("test", self.decoding["beam_size"], None)
        super().on_test_epoch_end()

    def load_tokenizer(self, state: dict) -> PairTokenizer:
        return PairTokenizer.from_dict(state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rnnlm"]["best_val_bleu"] = self.best_val_bleu

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.best_val_bleu = checkpoint.get("rnnlm", {}).get("best_val_bleu", -math.inf)
