"""A recurrent language model: embedding -> stack of RNN/LSTM/GRU layers -> dropout -> output layer.

The output layer is a full softmax (a linear decoder over the vocabulary) or, for vocabularies of 100k+
words, an adaptive softmax (Grave et al. 2017; `softmax="adaptive"`). Training and evaluation call
`nll(x, y, hidden)`, which with the full softmax runs the fused, chunked linear + cross-entropy of
`rnnlm.models.loss` instead of materialising the (B*T, V) logits (with `tie_weights`, the adaptive softmax
reads the embedding's rows too: `rnnlm.models.adaptive`); `forward` still returns logits (or, with
the adaptive softmax, log-probabilities) for sampling and scoring.

Regularisation (AWD-LSTM, Merity et al. 2017), every switch off by default (the defaults are the plain
model, bit for bit): locked dropout on the embedding output, between layers and on the last layer's output
(`dropout_input`, `dropout_hidden`, `dropout`), embedding dropout (`dropout_embedding`), weight drop on the
hidden-to-hidden matrices (`weight_drop`), and the activation penalties AR/TAR (`ar_alpha`, `tar_beta`),
which the training loop adds to the loss through `pop_penalty()`.

How `dropout` interacts: while `dropout_input` and `dropout_hidden` are both null (the default), `dropout`
is the classic element-wise dropout on the embedding output, between layers and on the last layer's output,
as it always was. Setting either of them switches the model to variational (locked) dropout, one mask per
sequence: `dropout_input` on the embedding output, `dropout_hidden` between layers, `dropout` on the last
layer's output only (a null one of the two counts as 0).

Shapes use B = batch (columns of the token stream), T = window length (bptt), V = vocabulary size,
E = embedding size, H = hidden size, L = number of layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlm import schema
from rnnlm.models import classic
from rnnlm.models.adaptive import AdaptiveSoftmax, TiedAdaptiveSoftmax
from rnnlm.models.cells.keys import PARALLEL_CELLS, check_cell_options
from rnnlm.models.cells.stack import CellStack
from rnnlm.models.classic import CELLS, Hidden
from rnnlm.models.loss import linear_cross_entropy
from rnnlm.models.regularization import dropout as drop
from rnnlm.models.regularization import embedding_dropout, locked_dropout, run_layers
from rnnlm.models.rules import (
    SOFTMAXES,
    check_forget_bias,
    check_output_layer,
    check_tie_weights,
)


class RNNLM(nn.Module):
    """Next-token model over a vocabulary of `vocab_size` ids.

    `forward(x, hidden)` returns logits and the new hidden state; pass that state (detached) to the
    next call to read a long stream in consecutive windows (truncated BPTT). `nll(x, y, hidden)` returns
    the cross-entropy of the targets `y` and the new hidden state, the fast path for training.

    Speed options (same model, same maths): `fused_loss` (chunked linear + cross-entropy, full softmax
    only) and `sparse_embedding` (the embedding's gradient holds only the rows of the window's tokens;
    needs an optimiser that accepts sparse gradients, such as SGD).
    """

    def __init__(
        self,
        vocab_size: int,
        cell: str = "gru",
        embedding_dim: int = 256,
        hidden_dim: int = 256,
        num_layers: int = 2,
        dropout: float = 0.0,
        tie_weights: bool = False,
        softmax: str = "full",
        adaptive_cutoffs: Sequence[int] | None = None,
        adaptive_div_value: float | None = None,
        fused_loss: bool = True,
        sparse_embedding: bool = False,
        dropout_input: float | None = None,
        dropout_hidden: float | None = None,
        dropout_embedding: float = 0.0,
        weight_drop: float = 0.0,
        ar_alpha: float = 0.0,
        tar_beta: float = 0.0,
        init_range: float | None = None,
        last_hidden_dim: int | None = None,
        forget_bias: float | None = None,
        scan: str | None = None,
        block: bool | None = None,
        conv_kernel: int | None = None,
        mlp_mult: float | None = None,
        heads: int | None = None,
        chunk_size: int | None = None,
        window: int | None = None,
    ) -> None:
        super().__init__()
        if cell not in CELLS and cell not in PARALLEL_CELLS:
            raise ValueError(
                f"model.cell={cell!r} is not a known cell; choose one of "
                f"{sorted(CELLS) + list(PARALLEL_CELLS)}"
            )
        cell_options = dict(
            scan=scan,
            block=block,
            conv_kernel=conv_kernel,
            mlp_mult=mlp_mult,
            heads=heads,
            chunk_size=chunk_size,
            window=window,
            weight_drop=weight_drop,
        )
        check_cell_options(cell, cell_options, hidden_dim)
        schema.check(
            "model",
            vocab_size=vocab_size,
            embedding_dim=embedding_dim,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            last_hidden_dim=last_hidden_dim,
            dropout=dropout,
            dropout_input=dropout_input,
            dropout_hidden=dropout_hidden,
            dropout_embedding=dropout_embedding,
            weight_drop=weight_drop,
            ar_alpha=ar_alpha,
            tar_beta=tar_beta,
            init_range=init_range,
        )
        check_forget_bias(forget_bias, cell)
        check_tie_weights(tie_weights, embedding_dim, hidden_dim, last_hidden_dim)
        cutoffs = check_output_layer(
            softmax, tie_weights, adaptive_cutoffs, adaptive_div_value, sparse_embedding, vocab_size
        )
        out_dim = last_hidden_dim or hidden_dim  # what the decoder reads
        self.cell = cell
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.softmax = softmax
        self.fused_loss = fused_loss
        # Layers of different sizes (AWD-LSTM: the last one as wide as the embedding, to tie them).
        self.split_layers = num_layers > 1 and out_dim != hidden_dim
        self.hidden_dim = hidden_dim if num_layers > 1 else out_dim
        self.out_dim = out_dim
        # Variational (locked) dropout as soon as one of its own rates is set; see the module docstring.
        self.locked = dropout_input is not None or dropout_hidden is not None
        self.dropout = dropout
        self.dropout_input = dropout if not self.locked else (dropout_input or 0.0)
        self.dropout_hidden = dropout if not self.locked else (dropout_hidden or 0.0)
        self.dropout_embedding = dropout_embedding
        self.weight_drop = weight_drop
        self.ar_alpha = ar_alpha
        self.tar_beta = tar_beta
        # Layer by layer (same weights, same kernels) when the layers need something between them:
        # also for the classic dropout between layers, which is then `regularization.dropout` (its mask
        # is cheaper on a CPU than the one nn.LSTM/nn.GRU would draw).
        self.layerwise = (
            self.locked
            or weight_drop > 0.0
            or self.split_layers
            or (num_layers > 1 and dropout > 0)
        )
        self._penalty: Tensor | None = None
        self.embedding = nn.Embedding(vocab_size, embedding_dim, sparse=sparse_embedding)
        # Time-major inside (T, B, .): the layout the RNN kernels use, so no transposed copies.
        self.stack: CellStack | None = None
        if cell in PARALLEL_CELLS:  # cells that train in parallel over time (rnnlm/models/cells/)
            self.split_layers = False
            self.hidden_dim = hidden_dim
            self.stack = CellStack(
                cell, embedding_dim, hidden_dim, num_layers, out_dim, self._between, **cell_options
            )
        elif self.split_layers:
            self.rnns = classic.split_layers(cell, embedding_dim, hidden_dim, num_layers, out_dim)
        else:
            self.rnn = classic.one_module(cell, embedding_dim, self.hidden_dim, num_layers)
        self.decoder: nn.Module
        if softmax == "adaptive" and tie_weights:
            self.decoder = TiedAdaptiveSoftmax(self.embedding, cutoffs)
        elif softmax == "adaptive":
            self.decoder = AdaptiveSoftmax(
                out_dim, vocab_size, cutoffs, div_value=adaptive_div_value or 4.0
            )
        else:
            self.decoder = nn.Linear(out_dim, vocab_size)
            if tie_weights:
                # One tensor, two uses (Press & Wolf 2017; Inan et al. 2017).
                self.decoder.weight = self.embedding.weight
        self.init_range = init_range
        self.forget_bias = forget_bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if self.softmax == "full":
            nn.init.zeros_(self.decoder.bias)
            if self.decoder.weight is not self.embedding.weight:
                nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        if self.init_range is not None:  # Zaremba et al. 2014: every weight uniform in [-r, r]
            for p in self.parameters():
                nn.init.uniform_(p, -self.init_range, self.init_range)
        if self.forget_bias is not None:
            classic.open_forget_gates(
                self.rnns if self.split_layers else [self.rnn], self.forget_bias
            )

    def _between(self, x: Tensor) -> Tensor:
        """Dropout on what one layer of a CellStack hands to the next (locked or element-wise)."""
        if self.locked:
            return locked_dropout(x, self.dropout_hidden, self.training, time_dim=0)
        return drop(x, self.dropout_hidden, self.training)

    def init_hidden(self, batch_size: int) -> Hidden:
        weight = self.embedding.weight
        if self.stack is not None:
            return self.stack.init_state(batch_size, weight)
        return classic.zero_state(
            self.cell, self.rnns if self.split_layers else self.rnn, batch_size, weight
        )

    def _layers(self) -> list[tuple[nn.RNNBase, int]]:
        if self.split_layers:
            return [(rnn, 0) for rnn in self.rnns]
        return [(self.rnn, k) for k in range(self.num_layers)]

    def _run_layers(self, x: Tensor, hidden: Hidden | None, locked: bool) -> tuple[Tensor, Hidden]:
        """The recurrent layers one at a time (see regularization.run_layers), state packed as usual."""
        lstm = self.cell == "lstm"
        states = classic.per_layer(hidden, self.num_layers, lstm, self.split_layers)
        out, new = run_layers(
            self._layers(), x, states, self.dropout_hidden, locked, self.weight_drop
        )
        return out, classic.packed(new, lstm, self.split_layers)

    def _features_tm(self, x: Tensor, hidden: Hidden | None) -> tuple[Tensor, Hidden]:
        """x (B, T) token ids -> last layer's outputs after dropout, time-major (T, B, H)."""
        xt = x.t()
        emb = self.embedding(xt)  # (T, B, E)
        if self.dropout_embedding:
            emb = embedding_dropout(emb, xt, self.vocab_size, self.dropout_embedding, self.training)
        if self.stack is not None:
            if self.locked:
                emb = locked_dropout(emb, self.dropout_input, self.training, time_dim=0)
                raw, hidden = self.stack(emb, hidden)  # (T, B, H)
                out = locked_dropout(raw, self.dropout, self.training, time_dim=0)
            else:
                raw, hidden = self.stack(drop(emb, self.dropout, self.training), hidden)
                out = drop(raw, self.dropout, self.training)
        else:
            with classic.recurrence_precision(self.cell, self.hidden_dim, emb.device.type):
                out, raw, hidden = self._classic_layers(emb, hidden)
            hidden = classic.as_dtype(hidden, self.embedding.weight.dtype)
        if self.training and (self.ar_alpha or self.tar_beta):
            # AR on the dropped output, TAR on the raw output's step-to-step change (AWD-LSTM).
            penalty = out.new_zeros(())
            if self.ar_alpha:
                penalty = penalty + self.ar_alpha * out.pow(2).mean()
            if self.tar_beta and raw.size(0) > 1:
                penalty = penalty + self.tar_beta * (raw[1:] - raw[:-1]).pow(2).mean()
            self._penalty = penalty
        return out, hidden

    def _classic_layers(self, emb: Tensor, hidden: Hidden | None) -> tuple[Tensor, Tensor, Hidden]:
        """The torch.nn layers over emb (T, B, E): dropped output, raw output (T, B, H), new state."""
        if not self.layerwise:
            raw, hidden = self.rnn(drop(emb, self.dropout, self.training), hidden)
            return drop(raw, self.dropout, self.training), raw, hidden
        if self.locked:
            emb = locked_dropout(emb, self.dropout_input, self.training, time_dim=0)
            raw, hidden = self._run_layers(emb, hidden, locked=True)
            return locked_dropout(raw, self.dropout, self.training, time_dim=0), raw, hidden
        # weight drop or layers of different sizes, with the classic element-wise dropout
        raw, hidden = self._run_layers(drop(emb, self.dropout, self.training), hidden, locked=False)
        return drop(raw, self.dropout, self.training), raw, hidden

    def pop_penalty(self) -> Tensor | None:
        """The AR + TAR penalty of the last training-mode forward (None when both are off), then forgets
        it. The training loop adds it to the cross-entropy it minimises; it is not part of the logged loss."""
        penalty, self._penalty = self._penalty, None
        return penalty

    def features(self, x: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """x (B, T) token ids -> last layer's outputs after dropout (B, T, H), new hidden state."""
        out, hidden = self._features_tm(x, hidden)
        return out.transpose(0, 1), hidden

    def forward(self, x: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """x (B, T) token ids -> logits (B, T, V), new hidden state.

        With the adaptive softmax these are the log-probabilities of the whole vocabulary (as good as
        logits: softmax gives the same distribution back).
        """
        out, hidden = self._features_tm(x, hidden)
        if self.softmax == "adaptive":
            t, b, _ = out.shape
            logits = self.decoder.log_prob(out.reshape(t * b, -1).float()).view(t, b, -1)
        else:
            logits = self.decoder(out)
        return logits.transpose(0, 1), hidden

    def nll(
        self, x: Tensor, y: Tensor, hidden: Hidden | None = None, reduction: str = "sum"
    ) -> tuple[Tensor, Hidden]:
        """Cross-entropy (nats, `reduction` "sum" or "mean" over all B*T tokens) of targets y (B, T)
        given inputs x (B, T), and the new hidden state."""
        out, hidden = self._features_tm(x, hidden)
        h = out.reshape(-1, out.size(-1))  # (T*B, H), time-major like the targets below
        target = y.t().reshape(-1)
        if self.softmax == "adaptive":
            # Log-probability of every target, head and tail clusters alike: perplexity is over all tokens.
            # float32 h: the decoder's sums and output buffer take h's dtype (bf16 under autocast).
            logp = self.decoder(h.float(), target).output
            loss = -(logp.sum() if reduction == "sum" else logp.mean())
        elif self.fused_loss and not torch.compiler.is_compiling():
            loss = linear_cross_entropy(
                h, self.decoder.weight, self.decoder.bias, target, reduction=reduction
            )
        else:
            loss = F.cross_entropy(self.decoder(h).float(), target, reduction=reduction)
        return loss, hidden

    def target_log_probs(
        self, x: Tensor, y: Tensor, hidden: Hidden | None = None
    ) -> tuple[Tensor, Tensor, Hidden]:
        """log p(y_t | x_<=t) of each target (B, T), the last layer's outputs that gave them (B, T, H)
        and the new hidden state: what the continuous cache (adaptation/cache.py) reads."""
        out, hidden = self._features_tm(x, hidden)
        target = y.t()  # (T, B)
        if self.softmax == "adaptive":
            t, b, h = out.shape
            logp = self.decoder(out.reshape(t * b, h).float(), target.reshape(-1)).output.view(t, b)
        else:
            logp = torch.log_softmax(self.decoder(out).float(), -1)
            logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (T, B)
        return logp.t(), out.transpose(0, 1), hidden


def detach_hidden(hidden: Hidden | None) -> Hidden | None:
    """Cut the graph at a window boundary, keeping the values (truncated BPTT)."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()


def num_parameters(module: nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once."""
    return sum(
        p.numel() for p in {id(p): p for p in module.parameters() if p.requires_grad}.values()
    )


__all__ = ["CELLS", "RNNLM", "SOFTMAXES", "Hidden", "detach_hidden", "num_parameters"]
