"""The attention-only baseline: a small `nn.Transformer` encoder-decoder (Vaswani et al. 2017).

    memory = Encoder(embed_src(x) * sqrt(d) + pos)                        (B, S, d), PAD keys masked
    h      = Decoder(embed_tgt(BOS y_<t) * sqrt(d) + pos, memory)         causal self-attention
    p(y_t) = softmax(W h_t + b)                                           W tied to embed_tgt

Pre-norm layers (LayerNorm before each sublayer, one more at the top of each stack): they train without
a warm-up as long as post-norm's. Learned absolute positions up to `max_len`. Decoding has no key/value
cache: each step re-reads the target prefix (short sentences: a few dozen positions), so the state is
the memory and the prefix; a prefix longer than `max_len` keeps its last `max_len` tokens.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnlm import schema
from rnnlm.models.seq2seq_base import (
    check_vocab,
    decoder_inputs,
    log_probs,
    padding_mask,
    target_nll,
)


class TransformerState(NamedTuple):
    memory: Tensor  # (N, S, d) encoder outputs
    pad: Tensor  # (N, S) True on PAD
    prefix: Tensor  # (N, t) the target ids read so far (BOS first)


class Seq2SeqTransformer(nn.Module):
    """Transformer encoder-decoder; `nll` trains it, `start`/`step` decode it."""

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d_model: int = 256,
        nhead: int = 4,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        max_len: int = 256,
        tie_embeddings: bool = True,
    ) -> None:
        super().__init__()
        check_vocab("model.src_vocab", src_vocab)
        check_vocab("model.tgt_vocab", tgt_vocab)
        schema.check("model", dropout=dropout, max_len=max_len, num_heads=nhead)
        for name, n in (
            ("d_model", d_model),
            ("encoder_layers", encoder_layers),
            ("decoder_layers", decoder_layers),
            ("dim_feedforward", dim_feedforward),
        ):
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"model.{name}={n} must be an integer >= 1")
        if d_model % nhead:
            raise ValueError(
                f"model.d_model={d_model} must be a multiple of model.nhead={nhead}: change either"
            )
        self.src_vocab, self.tgt_vocab, self.d_model, self.max_len = (
            src_vocab,
            tgt_vocab,
            d_model,
            max_len,
        )
        self.src_embedding = nn.Embedding(src_vocab, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab, d_model)
        self.position = nn.Embedding(max_len, d_model)  # shared by both sides
        self.drop = nn.Dropout(dropout)

        def layer(cls: type[nn.Module]) -> nn.Module:
            return cls(d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first=True)

        # Built here so the encoder can skip nested tensors (which pre-norm layers do not support).
        encoder = nn.TransformerEncoder(
            layer(nn.TransformerEncoderLayer),
            encoder_layers,
            nn.LayerNorm(d_model),
            enable_nested_tensor=False,
        )
        decoder = nn.TransformerDecoder(
            layer(nn.TransformerDecoderLayer), decoder_layers, nn.LayerNorm(d_model)
        )
        self.transformer = nn.Transformer(
            d_model, nhead, batch_first=True, custom_encoder=encoder, custom_decoder=decoder
        )
        self.output = nn.Linear(d_model, tgt_vocab)
        if tie_embeddings:
            self.output.weight = self.tgt_embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for emb in (self.src_embedding, self.tgt_embedding, self.position):
            nn.init.normal_(emb.weight, 0.0, self.d_model**-0.5)
        if self.output.weight is not self.tgt_embedding.weight:
            nn.init.normal_(self.output.weight, 0.0, self.d_model**-0.5)
        nn.init.zeros_(self.output.bias)

    def _embed(self, emb: nn.Embedding, ids: Tensor) -> Tensor:
        """ids (B, L) -> (B, L, d): scaled token embedding + position, dropped out."""
        if ids.size(1) > self.max_len:
            raise ValueError(
                f"a sequence of {ids.size(1)} tokens is longer than model.max_len={self.max_len}: "
                "raise model.max_len or cap data.max_len"
            )
        pos = self.position(torch.arange(ids.size(1), device=ids.device))
        return self.drop(emb(ids) * math.sqrt(self.d_model) + pos)

    def _decode(self, prefix: Tensor, memory: Tensor, pad: Tensor) -> Tensor:
        """prefix (B, t) target inputs -> decoder outputs (B, t, d), causal."""
        t = prefix.size(1)
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=prefix.device), 1)
        return self.transformer.decoder(
            self._embed(self.tgt_embedding, prefix),
            memory,
            tgt_mask=causal,
            tgt_is_causal=True,
            memory_key_padding_mask=pad,
        )

    def start(self, src: Tensor, src_len: Tensor) -> TransformerState:
        """src (B, S) right-padded -> the memory, its PAD mask and an empty target prefix."""
        pad = padding_mask(src_len.to(src.device), src.size(1))
        memory = self.transformer.encoder(
            self._embed(self.src_embedding, src), src_key_padding_mask=pad
        )
        return TransformerState(memory, pad, src.new_zeros(src.size(0), 0))

    def nll(self, src: Tensor, src_len: Tensor, tgt: Tensor, reduction: str = "sum") -> Tensor:
        """Cross-entropy (nats, float32) of tgt (B, T) (ids + EOS, PAD-padded) given src (B, S)."""
        state = self.start(src, src_len)
        h = self._decode(decoder_inputs(tgt), state.memory, state.pad)
        return target_nll(h, self.output.weight, self.output.bias, tgt, reduction)

    def step(self, state: TransformerState, prev: Tensor) -> tuple[Tensor, TransformerState]:
        """prev (N,) the last target ids (BOS first) -> log p(next) (N, V_tgt) float32, new state."""
        prefix = torch.cat([state.prefix, prev.unsqueeze(1)], 1)[:, -self.max_len :]
        h = self._decode(prefix, state.memory, state.pad)[:, -1]  # (N, d)
        return log_probs(h, self.output.weight, self.output.bias), state._replace(prefix=prefix)

    def reorder(self, state: TransformerState, index: Tensor) -> TransformerState:
        return TransformerState(*(t.index_select(0, index) for t in state))


__all__ = ["Seq2SeqTransformer", "TransformerState"]
