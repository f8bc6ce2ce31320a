"""A conditional language model: any of the package's language models, taught to translate by reading

    source (left-padded)  SEP  target  EOS

and learning only the target tokens. Nothing in the language model changes: the source is context,
the separator says "now the translation", and generation continues after it. With one vocabulary for
both sides (`shared`) the separator is BOS; with two, the target ids come after the source's
(offset by src_vocab, so the joint vocabulary is src_vocab + tgt_vocab) and the separator is the
target's BOS. The loss and every decoding step read the target ids' rows of the output layer only
(a softmax over the target vocabulary), so decoding can never write a source token.

The source is left-padded so every sentence's SEP sits in the same column: training reads the batch
in one call, and `start` reads all prefixes in one parallel call (a recurrent model reads the PADs
before a short source as context; the Transformer attends to them).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnlm.models.classic import Hidden
from rnnlm.models.rnn_lm import RNNLM
from rnnlm.models.seq2seq_base import PAD, check_vocab, decoder_inputs, log_probs, target_nll
from rnnlm.models.transformer import TransformerLM


class ConditionalState(NamedTuple):
    hidden: Hidden | None  # a recurrent LM's state after the tokens read
    ids: Tensor | None  # (N, t) the Transformer LM's tokens read (it re-reads them at every step)


def left_pad(src: Tensor, src_len: Tensor) -> Tensor:
    """src (B, S) right-padded -> the same tokens right-aligned, PAD on the left (B, S)."""
    s = src.size(1)
    idx = torch.arange(s, device=src.device) - (s - src_len.to(src.device, torch.long)).unsqueeze(1)
    return src.gather(1, idx.clamp(min=0)).masked_fill(idx < 0, PAD)


class ConditionalLM(nn.Module):
    """Translation through a language model `lm` over the joint vocabulary (see `joint_vocab`)."""

    def __init__(self, lm: nn.Module, src_vocab: int, tgt_vocab: int, shared: bool) -> None:
        super().__init__()
        check_vocab("src_vocab", src_vocab)
        check_vocab("tgt_vocab", tgt_vocab)
        if not isinstance(lm, RNNLM | TransformerLM):
            raise ValueError(
                f"ConditionalLM wraps an RNNLM or a TransformerLM, got {type(lm).__name__}"
            )
        if shared and src_vocab != tgt_vocab:
            raise ValueError(
                f"shared=true means one vocabulary, but src_vocab={src_vocab} != tgt_vocab={tgt_vocab}: "
                "use the shared tokenizer's size for both or set shared=false"
            )
        joint = self.joint_vocab(src_vocab, tgt_vocab, shared)
        if lm.vocab_size != joint:
            raise ValueError(
                f"the language model's vocab_size={lm.vocab_size} must be "
                f"ConditionalLM.joint_vocab({src_vocab}, {tgt_vocab}, shared={shared}) = {joint}: "
                "build it with that size"
            )
        if isinstance(lm, RNNLM) and lm.softmax != "full":
            raise ValueError(
                f"ConditionalLM reads the target rows of a full softmax; model.softmax={lm.softmax!r}: "
                "set model.softmax=full"
            )
        self.lm = lm
        self.src_vocab, self.tgt_vocab, self.shared = src_vocab, tgt_vocab, shared
        self.offset = 0 if shared else src_vocab  # target id t is joint id t + offset
        self.transformer = isinstance(lm, TransformerLM)
        self._dims: list[int] | None = None  # the batch dim of each tensor of the LM's hidden state

    @staticmethod
    def joint_vocab(src_vocab: int, tgt_vocab: int, shared: bool) -> int:
        """The language model's vocabulary: one shared one, or the source's then the target's."""
        return src_vocab if shared else src_vocab + tgt_vocab

    def _target_rows(self) -> tuple[Tensor, Tensor | None]:
        """The output layer's rows of the target ids: (V_tgt, H) weight, (V_tgt,) bias (views)."""
        rows = slice(self.offset, self.offset + self.tgt_vocab)
        bias = self.lm.decoder.bias
        return self.lm.decoder.weight[rows], None if bias is None else bias[rows]

    def _features(self, ids: Tensor, hidden: Hidden | None) -> tuple[Tensor, Hidden | None]:
        """ids (B, L) joint ids -> the LM's last features (B, L, H) (before its output layer)."""
        if not self.transformer:
            return self.lm.features(ids, hidden)
        lm = self.lm
        if ids.size(1) > lm.max_len:
            raise ValueError(
                f"source + target = {ids.size(1)} tokens do not fit model.max_len={lm.max_len}: "
                "raise model.max_len or lower data.max_len"
            )
        h = lm.drop(lm.embedding(ids) + lm.position(torch.arange(ids.size(1), device=ids.device)))
        for block in lm.blocks:
            h = block(h)
        return lm.ln_f(h), None

    def nll(self, src: Tensor, src_len: Tensor, tgt: Tensor, reduction: str = "sum") -> Tensor:
        """Cross-entropy (nats, float32) of tgt (B, T) (ids + EOS, PAD-padded) given src (B, S)."""
        prefix = left_pad(src, src_len)  # (B, S)
        x = torch.cat([prefix, decoder_inputs(tgt) + self.offset], 1)  # BOS + offset is SEP
        out, _ = self._features(x, None)  # (B, S + T, H)
        weight, bias = self._target_rows()
        return target_nll(out[:, src.size(1) :], weight, bias, tgt, reduction)

    def start(self, src: Tensor, src_len: Tensor) -> ConditionalState:
        prefix = left_pad(src, src_len)
        if self.transformer:
            return ConditionalState(None, prefix)
        _, hidden = self._features(prefix, None)  # one parallel call over the sources
        return ConditionalState(hidden, None)

    def step(self, state: ConditionalState, prev: Tensor) -> tuple[Tensor, ConditionalState]:
        """prev (N,) the last target ids (BOS first: SEP) -> log p(next target) (N, V_tgt), new state."""
        token = (prev + self.offset).unsqueeze(1)  # (N, 1) joint ids
        if self.transformer:
            ids = torch.cat([state.ids, token], 1)
            out, _ = self._features(ids, None)
            state = ConditionalState(None, ids)
        else:
            out, hidden = self._features(token, state.hidden)
            state = ConditionalState(hidden, None)
        weight, bias = self._target_rows()
        return log_probs(out[:, -1], weight, bias), state

    def _batch_dims(self) -> list[int]:
        """Which dim of each hidden-state tensor is the batch: where init_hidden(1) and (2) differ."""
        if self._dims is None:
            one, two = self.lm.init_hidden(1), self.lm.init_hidden(2)
            one, two = (one, two) if isinstance(one, tuple) else ((one,), (two,))
            self._dims = [
                next(d for d in range(a.dim()) if a.size(d) != b.size(d))
                for a, b in zip(one, two, strict=True)
            ]
        return self._dims

    def reorder(self, state: ConditionalState, index: Tensor) -> ConditionalState:
        if self.transformer:
            return ConditionalState(None, state.ids.index_select(0, index))
        hidden = state.hidden
        parts = hidden if isinstance(hidden, tuple) else (hidden,)
        picked = tuple(
            t.index_select(d, index) for t, d in zip(parts, self._batch_dims(), strict=True)
        )
        return ConditionalState(picked if isinstance(hidden, tuple) else picked[0], None)

    def pop_penalty(self) -> Tensor | None:
        """The recurrent LM's AR/TAR penalty of the last training forward (RNNLM.pop_penalty)."""
        return None if self.transformer else self.lm.pop_penalty()


__all__ = ["ConditionalLM", "ConditionalState", "left_pad"]
