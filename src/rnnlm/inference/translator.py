"""`Translator`: a trained translation model plus its two vocabularies, usable without a Trainer.

    from rnnlm import Translator
    t = Translator.load("outputs/train/runs/<run>/checkpoints/best.ckpt")
    t.translate(["Where is the station?"])             # beam search, 5 beams
    t.save_pretrained("tatoeba-en-fr")                  # the Hub format (inference/hub.py)

One home for building a translation model from its config (`build_translation_model`, used by training
too) and for decoding batches of sentences (`translate_ids`): validation, `src/eval.py`,
`src/translate.py` and this class all translate through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnlm.data.pair_batches import pad
from rnnlm.data.pair_tokenizer import PairTokenizer
from rnnlm.data.pairs import UNK_ID
from rnnlm.errors import UserError
from rnnlm.inference import hub
from rnnlm.inference.checkpoint import CheckpointError, build_from_checkpoint, load_checkpoint
from rnnlm.models import (
    RNNLM,
    ConditionalLM,
    Seq2SeqAttention,
    Seq2SeqTransformer,
    TransformerLM,
    beam_search,
    greedy,
)

TASK = "translation"  # checkpoint["rnnlm"]["task"] of a translation run
# Language models become conditional LMs (source <sep> target); the encoder-decoders are built as is.
LM_CLASSES: dict[str, type] = {
    "rnnlm.models.RNNLM": RNNLM,
    "rnnlm.models.rnn_lm.RNNLM": RNNLM,
    "rnnlm.models.TransformerLM": TransformerLM,
    "rnnlm.models.transformer.TransformerLM": TransformerLM,
}
SEQ2SEQ_CLASSES: dict[str, type] = {
    "rnnlm.models.Seq2SeqAttention": Seq2SeqAttention,
    "rnnlm.models.seq2seq.Seq2SeqAttention": Seq2SeqAttention,
    "rnnlm.models.Seq2SeqTransformer": Seq2SeqTransformer,
    "rnnlm.models.seq2seq_transformer.Seq2SeqTransformer": Seq2SeqTransformer,
}


def build_translation_model(
    cfg: dict[str, Any], src_vocab: int, tgt_vocab: int, shared: bool, where: str | Path = "model"
) -> nn.Module:
    """An encoder-decoder from its config, or a language model config wrapped as a conditional LM."""
    target = cfg.get("_target_")
    if target in LM_CLASSES:
        vocab = ConditionalLM.joint_vocab(src_vocab, tgt_vocab, shared)
        lm = build_from_checkpoint(cfg, LM_CLASSES, where, "model", vocab_size=vocab)
        return ConditionalLM(lm, src_vocab, tgt_vocab, shared)
    classes = {**LM_CLASSES, **SEQ2SEQ_CLASSES}
    return build_from_checkpoint(
        cfg, classes, where, "model", src_vocab=src_vocab, tgt_vocab=tgt_vocab
    )


def is_translation(path: str | Path) -> bool:
    """Whether `path` (a checkpoint, a pretrained folder or a Hub repo id) holds a translation model:
    src/eval.py and rnnlm-export then take the translation path. The checkpoint's tensors are
    memory-mapped, not read, so asking costs little before the real load."""
    if hub.is_pretrained(path):
        return (hub.read_pretrained(path).config.get("model") or {}).get("task") == TASK
    if not Path(path).expanduser().is_file():
        return False  # the loader that follows says what is wrong with it
    return load_checkpoint(path, mmap=True)["rnnlm"].get("task") == TASK


def check_decoding(beam_size: int, max_len: int, length_penalty: float) -> None:
    if not isinstance(beam_size, int) or beam_size < 1:
        raise UserError(
            f"beam_size={beam_size} must be an integer >= 1: 1 is greedy decoding, 5 a usual beam"
        )
    if not isinstance(max_len, int) or max_len < 1:
        raise UserError(f"max_len={max_len} must be an integer >= 1 (target tokens per sentence)")
    if length_penalty < 0:
        raise UserError(f"length_penalty={length_penalty} must be >= 0 (0: none; 0.6 is GNMT's)")


@torch.no_grad()
def translate_ids(
    model: nn.Module,
    sources: Sequence[Sequence[int]],
    beam_size: int = 1,
    length_penalty: float = 0.6,
    max_len: int = 128,
    batch_size: int = 64,
) -> list[list[int]]:
    """Target ids for each source (ids without BOS/EOS), in order; batched by length so that a batch
    pads little. beam_size 1 is greedy decoding."""
    check_decoding(beam_size, max_len, length_penalty)
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            seqs = [list(sources[i]) or [UNK_ID] for i in rows]  # an empty source reads as <unk>
            src_len = torch.tensor([len(s) for s in seqs], device=device)
            src = pad(seqs).to(device)  # (B, S), right-padded with <pad>
            if beam_size == 1:
                hyps = greedy(model, src, src_len, max_len=max_len)
            else:
                hyps = beam_search(
                    model,
                    src,
                    src_len,
                    beam_size=beam_size,
                    length_penalty=length_penalty,
                    max_len=max_len,
                )
            for i, h in zip(rows, hyps, strict=True):
                out[i] = list(h)
    finally:
        model.train(was_training)
    return out


class Translator:
    """Translates sentences with a model trained by `src/train.py data=tatoeba_eng_fra ...` (or any
    pairs data): `translate(texts)` in one go, `stream(lines)` as lines come."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PairTokenizer,
        config: dict | None = None,
        path: str | Path | None = None,
        model_config: dict | None = None,
        training: dict | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or {}
        self.path = Path(path) if path is not None else None
        self.model_config = model_config
        self.training = training or {}

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Translator:
        """A `.ckpt` of a translation run, or a folder saved by `save_pretrained` (or a Hub repo id)."""
        if hub.is_pretrained(path):
            return cls.from_pretrained(path, device=device)
        ckpt = load_checkpoint(path, map_location=device)
        meta = ckpt["rnnlm"]
        if meta.get("task") != TASK:
            raise CheckpointError(
                f"{path} is a language-model checkpoint, not a translation one: sample from it with "
                f"src/generate.py ckpt_path={path}, or train a translation model (data=tatoeba_eng_fra)"
            )
        hp = ckpt["hyper_parameters"]
        tok = PairTokenizer.from_dict(meta["tokenizer"])
        model = build_translation_model(
            hp["model"], hp["src_vocab"], hp["tgt_vocab"], bool(hp["shared"]), path
        )
        state = {k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
        model.to(device)
        training = {k: meta.get(k) for k in ("command", "best_val_loss", "best_val_bleu")}
        return cls(
            model,
            tok,
            meta.get("config"),
            Path(path).expanduser().resolve(),
            model_config=hp["model"],
            training={**training, "config": meta.get("config")},
        )

    @classmethod
    def from_pretrained(cls, name: str | Path, device: str | torch.device = "cpu") -> Translator:
        from safetensors.torch import load_model

        found = hub.read_pretrained(name)
        spec = found.config["model"]
        if not isinstance(spec, dict) or spec.get("task") != TASK:
            raise hub.PretrainedError(
                f"{name} holds a language model, not a translation model: load it with "
                "LanguageModel.load, or sample from it with src/generate.py"
            )
        model = build_translation_model(
            spec["model"], spec["src_vocab"], spec["tgt_vocab"], bool(spec["shared"]), name
        )
        load_model(model, str(found.weights), strict=True)
        model.to(device)
        training = found.config.get("training") or {}
        return cls(
            model,
            PairTokenizer.from_dict(found.tokenizer),
            training.get("config"),
            model_config=spec["model"],
            training=training,
        )

    def save_pretrained(self, folder: str | Path) -> Path:
        """The Hub format of LanguageModel.save_pretrained; `Translator.load(folder)` reads it back."""
        if self.model_config is None:
            raise ValueError(
                "save_pretrained needs model_config (the model's _target_ and arguments)"
            )
        spec = {
            "task": TASK,
            "model": self.model_config,
            "src_vocab": self.model.src_vocab,
            "tgt_vocab": self.model.tgt_vocab,
            "shared": self.tokenizer.shared,
        }
        return hub.write_pretrained(
            folder, self.model, spec, self.model.tgt_vocab, self.tokenizer.to_dict(), self.training
        )

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None) -> str:
        """Save in the Hub format and upload to the Hub repo `repo_id` (created if absent); its URL."""
        return hub.push_pretrained(self.save_pretrained, repo_id, private=private, token=token)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def translate(
        self,
        texts: str | Sequence[str],
        beam_size: int = 5,
        length_penalty: float = 0.6,
        max_len: int = 128,
        batch_size: int = 64,
    ) -> list[str]:
        """Translations of `texts` (a string is one sentence), in order."""
        if isinstance(texts, str):
            texts = [texts]
        ids = [self.tokenizer.source.encode(t) for t in texts]
        out = translate_ids(self.model, ids, beam_size, length_penalty, max_len, batch_size)
        return [self.tokenizer.target.decode(h) for h in out]

    def stream(self, lines: Iterable[str], batch_size: int = 64, **kwargs: Any) -> Iterator[str]:
        """Translations of `lines` as they come, `batch_size` lines at a time (a file of any length)."""
        batch: list[str] = []
        for line in lines:
            batch.append(line.rstrip("\r\n"))
            if len(batch) == batch_size:
                yield from self.translate(batch, batch_size=batch_size, **kwargs)
                batch = []
        if batch:
            yield from self.translate(batch, batch_size=batch_size, **kwargs)
