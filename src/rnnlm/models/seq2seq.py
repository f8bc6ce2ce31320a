"""A recurrent encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015) for translation.

    encoder:   m = BiRNN(embed(x))                     (B, S, H): H/2 per direction, packed over src_len
    bridge:    s_0 = tanh(W_b [h_fwd_S ; h_bwd_1])     the decoder's first state from the encoder's last
    decoder:   h_t = RNN(h_{t-1}, [embed(y_{t-1}) ; h~_{t-1}])          input feeding (Luong): h~ below
               c_t = attention(h_t, m)                 (attention.py: additive or "general" by `attention`)
               h~_t = tanh(W_c [c_t ; h_t])            the attentional vector
               p(y_t) = softmax(W_o P h~_t + b)        W_o tied to the decoder's embedding, P: H -> E

The score is Bahdanau's or Luong's; the rest of the decoder is Luong's (attention after the RNN step),
as in OpenNMT's `global_attention`. Input feeding makes every step wait for the previous attentional
vector, so training steps through the target; the step is kept lean: the embedding's share of layer 0's
input gates is one matrix multiply for all steps before the loop (passed as the cell's per-row bias),
each step is the fused `torch.gru_cell`/`lstm_cell`, two batched matrix multiplies of attention and one
linear, and the output layer runs once over all steps with the fused loss. Without input feeding the
decoder RNN runs over the whole target in one call and attention over all steps in one batched multiply.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlm import schema
from rnnlm.models.attention import Attention
from rnnlm.models.classic import recurrence_precision
from rnnlm.models.regularization import dropout as drop
from rnnlm.models.seq2seq_base import (
    check_vocab,
    decoder_inputs,
    log_probs,
    padding_mask,
    target_nll,
)

SEQ2SEQ_CELLS = ("gru", "lstm")


class State(NamedTuple):
    """What decoding carries, every tensor batch-first so `reorder` is one index_select per field."""

    memory: Tensor  # (N, S, H) encoder outputs
    keys: Tensor  # (N, S, H) attention's keys of the memory
    pad: Tensor  # (N, S) True on PAD
    h: Tensor  # (N, L, H) decoder state per layer
    c: Tensor | None  # (N, L, H) LSTM cell state per layer
    feed: Tensor | None  # (N, H) the previous attentional vector (input feeding)


class Seq2SeqAttention(nn.Module):
    """Bidirectional recurrent encoder, attention decoder; `nll` trains it, `start`/`step` decode it."""

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        cell: str = "gru",
        embedding_dim: int = 256,
        hidden_dim: int = 256,
        encoder_layers: int = 1,
        decoder_layers: int = 1,
        attention: str = "bahdanau",
        input_feeding: bool = True,
        tie_embeddings: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        check_vocab("model.src_vocab", src_vocab)
        check_vocab("model.tgt_vocab", tgt_vocab)
        if cell not in SEQ2SEQ_CELLS:
            raise ValueError(
                f"model.cell={cell!r}: the encoder-decoder takes one of {SEQ2SEQ_CELLS}"
            )
        schema.check("model", embedding_dim=embedding_dim, hidden_dim=hidden_dim, dropout=dropout)
        for name, layers in (
            ("encoder_layers", encoder_layers),
            ("decoder_layers", decoder_layers),
        ):
            if not isinstance(layers, int) or layers < 1:
                raise ValueError(f"model.{name}={layers} must be an integer >= 1")
        if hidden_dim % 2:
            raise ValueError(
                f"model.hidden_dim={hidden_dim} must be even: the bidirectional encoder gives each "
                "direction half of it; set an even hidden_dim"
            )
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.cell, self.hidden_dim, self.embedding_dim = cell, hidden_dim, embedding_dim
        self.decoder_layers, self.input_feeding, self.dropout = (
            decoder_layers,
            input_feeding,
            dropout,
        )
        self.src_embedding = nn.Embedding(src_vocab, embedding_dim)
        self.encoder = rnn(
            embedding_dim,
            hidden_dim // 2,
            num_layers=encoder_layers,
            bidirectional=True,
            dropout=dropout if encoder_layers > 1 else 0.0,
        )
        states = 2 if cell == "lstm" else 1  # (h, c) or h
        self.bridge = nn.Linear(hidden_dim, decoder_layers * hidden_dim * states)
        self.tgt_embedding = nn.Embedding(tgt_vocab, embedding_dim)
        feed = hidden_dim if input_feeding else 0
        self.decoder = rnn(
            embedding_dim + feed,
            hidden_dim,
            num_layers=decoder_layers,
            dropout=dropout if decoder_layers > 1 else 0.0,
        )
        self.attention = Attention(attention, hidden_dim)
        self.combine = nn.Linear(2 * hidden_dim, hidden_dim, bias=False)  # W_c
        # Tied: the attentional vector is projected to the embedding's width first (P).
        self.project = (
            nn.Linear(hidden_dim, embedding_dim)
            if tie_embeddings and hidden_dim != embedding_dim
            else nn.Identity()
        )
        self.output = nn.Linear(embedding_dim if tie_embeddings else hidden_dim, tgt_vocab)
        if tie_embeddings:
            self.output.weight = self.tgt_embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.src_embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.tgt_embedding.weight, -0.1, 0.1)
        if self.output.weight is not self.tgt_embedding.weight:
            nn.init.uniform_(self.output.weight, -0.1, 0.1)
        nn.init.zeros_(self.output.bias)

    # encoder
    def encode(self, src: Tensor, src_len: Tensor) -> State:
        """src (B, S) right-padded, src_len (B,) -> the decoding state before the first target token."""
        emb = drop(self.src_embedding(src), self.dropout, self.training)  # (B, S, E)
        lengths = src_len.to("cpu", torch.long)
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        with recurrence_precision(self.cell, self.hidden_dim // 2, src.device.type):
            out, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True)  # (B, S', H), S' = max(src_len)
        h_n = final[0] if self.cell == "lstm" else final  # (2 * layers, B, H/2)
        last = torch.cat([h_n[-2], h_n[-1]], -1)  # (B, H): the top layer's two directions
        b, n = src.size(0), self.decoder_layers
        init = torch.tanh(self.bridge(last)).view(b, n, -1)  # (B, L, H) or (B, L, 2H)
        h, c = init.chunk(2, -1) if self.cell == "lstm" else (init, None)
        pad = padding_mask(src_len.to(src.device), memory.size(1))
        feed = memory.new_zeros(b, self.hidden_dim) if self.input_feeding else None
        return State(memory, self.attention.keys(memory), pad, h, c, feed)

    # decoder
    def _layer(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        d = self.decoder
        return (
            getattr(d, f"weight_ih_l{k}"),
            getattr(d, f"weight_hh_l{k}"),
            getattr(d, f"bias_ih_l{k}"),
            getattr(d, f"bias_hh_l{k}"),
        )

    def _input_gates(self, emb: Tensor) -> Tensor:
        """emb (..., E) -> the embedding's share of layer 0's input gates, with their bias (..., G)."""
        w_ih, _, b_ih, _ = self._layer(0)
        return F.linear(emb, w_ih[:, : self.embedding_dim], b_ih)

    def _cells(
        self, gates: Tensor, x: Tensor | None, h: list[Tensor], c: list[Tensor] | None
    ) -> Tensor:
        """One step of the decoder's layers, in place on the per-layer lists h, c (each (B, H)).

        gates (B, G): layer 0's input gates from the embedding; x (B, H): the fed attentional vector,
        multiplied in by the cell (None without input feeding: a zero-width input). Returns the top h.
        """
        out = x
        for k in range(self.decoder_layers):
            w_ih, w_hh, b_ih, b_hh = self._layer(k)
            if (
                k == 0
            ):  # the per-row bias carries the embedding's gates (linear broadcasts a (B, G) bias)
                w_ih, b_ih = w_ih[:, self.embedding_dim :], gates
                if out is None:
                    out = gates.new_zeros(gates.size(0), 0)
            else:
                out = drop(out, self.dropout, self.training)
            if c is not None:
                h[k], c[k] = torch.lstm_cell(out, (h[k], c[k]), w_ih, w_hh, b_ih, b_hh)
            else:
                h[k] = torch.gru_cell(out, h[k], w_ih, w_hh, b_ih, b_hh)
            out = h[k]
        return out

    def _attend(self, q: Tensor, state: State) -> Tensor:
        """q (B, [T,] H) -> the attentional vector h~ (dropped out), same shape."""
        context = self.attention(q, state.keys, state.memory, state.pad)
        h_att = torch.tanh(self.combine(torch.cat([context, q.to(context.dtype)], -1)))
        return drop(h_att, self.dropout, self.training)

    def _decode_all(self, state: State, tgt: Tensor) -> Tensor:
        """Teacher forcing: the attentional vectors (B, T, H) of every target position."""
        emb = drop(self.tgt_embedding(decoder_inputs(tgt).t()), self.dropout, self.training)
        if not self.input_feeding:  # one RNN call over T, attention over all T at once
            h0 = state.h.transpose(0, 1).to(emb.dtype).contiguous()  # (L, B, H)
            c0 = None if state.c is None else state.c.transpose(0, 1).to(emb.dtype).contiguous()
            hx = h0 if c0 is None else (h0, c0)
            with recurrence_precision(self.cell, self.hidden_dim, tgt.device.type):
                out, _ = self.decoder(emb, hx)  # (T, B, H)
            return self._attend(out.transpose(0, 1), state)
        gates = self._input_gates(emb)  # (T, B, G): one matrix multiply for every step
        h, c = list(state.h.unbind(1)), None if state.c is None else list(state.c.unbind(1))
        feed, outs = state.feed, []
        for t in range(tgt.size(1)):
            q = self._cells(gates[t], feed, h, c)
            feed = self._attend(q, state)
            outs.append(feed)
        return torch.stack(outs, 1)  # (B, T, H)

    def nll(self, src: Tensor, src_len: Tensor, tgt: Tensor, reduction: str = "sum") -> Tensor:
        """Cross-entropy (nats, float32) of tgt (B, T) (ids + EOS, PAD-padded) given src (B, S)."""
        h_att = self._decode_all(self.encode(src, src_len), tgt)
        return target_nll(self.project(h_att), self.output.weight, self.output.bias, tgt, reduction)

    def start(self, src: Tensor, src_len: Tensor) -> State:
        return self.encode(src, src_len)

    def step(self, state: State, prev: Tensor) -> tuple[Tensor, State]:
        """prev (N,) the last target ids (BOS first) -> log p(next) (N, V_tgt) float32, new state."""
        gates = self._input_gates(self.tgt_embedding(prev))  # (N, G)
        h, c = list(state.h.unbind(1)), None if state.c is None else list(state.c.unbind(1))
        q = self._cells(gates, state.feed, h, c)
        h_att = self._attend(q, state)
        logp = log_probs(self.project(h_att), self.output.weight, self.output.bias)
        new_c = None if c is None else torch.stack(c, 1)
        feed = h_att if self.input_feeding else None
        return logp, state._replace(h=torch.stack(h, 1), c=new_c, feed=feed)

    def reorder(self, state: State, index: Tensor) -> State:
        return State(*(None if t is None else t.index_select(0, index) for t in state))


__all__ = ["SEQ2SEQ_CELLS", "Seq2SeqAttention", "State"]
