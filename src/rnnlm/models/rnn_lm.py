"""A recurrent language model: embedding -> stack of RNN/LSTM/GRU layers -> dropout -> linear decoder.

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

from torch import Tensor, nn

from rnnlm.models.regularization import embedding_dropout, locked_dropout, run_layers

# An LSTM carries (h, c), the other cells carry h alone; each tensor is (L, B, H).
Hidden = Tensor | tuple[Tensor, Tensor]

CELLS: dict[str, tuple[type[nn.RNNBase], dict]] = {
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}


class RNNLM(nn.Module):
    """Next-token model over a vocabulary of `vocab_size` ids.

    `forward(x, hidden)` returns logits and the new hidden state; pass that state (detached) to the
    next call to read a long stream in consecutive windows (truncated BPTT).
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
        dropout_input: float | None = None,
        dropout_hidden: float | None = None,
        dropout_embedding: float = 0.0,
        weight_drop: float = 0.0,
        ar_alpha: float = 0.0,
        tar_beta: float = 0.0,
        init_range: float | None = None,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(
                f"model.cell={cell!r} is not a known cell; choose one of {sorted(CELLS)}"
            )
        for name, value in (
            ("vocab_size", vocab_size),
            ("embedding_dim", embedding_dim),
            ("hidden_dim", hidden_dim),
            ("num_layers", num_layers),
        ):
            if value < 1:
                raise ValueError(f"model.{name}={value} must be >= 1")
        for name, value in (
            ("dropout", dropout),
            ("dropout_input", dropout_input),
            ("dropout_hidden", dropout_hidden),
            ("dropout_embedding", dropout_embedding),
            ("weight_drop", weight_drop),
        ):
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"model.{name}={value} must be in [0, 1)")
        for name, value in (("ar_alpha", ar_alpha), ("tar_beta", tar_beta)):
            if value < 0:
                raise ValueError(f"model.{name}={value} must be >= 0")
        if init_range is not None and init_range <= 0:
            raise ValueError(f"model.init_range={init_range} must be > 0 (or null)")
        if tie_weights and embedding_dim != hidden_dim:
            raise ValueError(
                f"model.tie_weights=true needs model.embedding_dim == model.hidden_dim "
                f"(got {embedding_dim} and {hidden_dim}): set them equal or set model.tie_weights=false"
            )
        rnn_cls, extra = CELLS[cell]
        self.cell = cell
        self.vocab_size = vocab_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        # Variational (locked) dropout as soon as one of its own rates is set; see the module docstring.
        self.locked = dropout_input is not None or dropout_hidden is not None
        self.dropout = dropout
        self.dropout_input = dropout if not self.locked else (dropout_input or 0.0)
        self.dropout_hidden = dropout if not self.locked else (dropout_hidden or 0.0)
        self.dropout_embedding = dropout_embedding
        self.weight_drop = weight_drop
        self.ar_alpha = ar_alpha
        self.tar_beta = tar_beta
        # Layer by layer (same weights, same kernels) when the layers need something between them.
        self.layerwise = self.locked or weight_drop > 0.0
        self._penalty: Tensor | None = None
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = rnn_cls(
            embedding_dim,
            hidden_dim,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 and not self.layerwise else 0.0,
            batch_first=True,
            **extra,
        )
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_dim, vocab_size)
        if tie_weights:
            # One tensor, two uses (Press & Wolf 2017; Inan et al. 2017).
            self.decoder.weight = self.embedding.weight
        self.init_range = init_range
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if self.decoder.weight is not self.embedding.weight:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        if self.init_range is not None:  # Zaremba et al. 2014: every weight uniform in [-r, r]
            for p in self.parameters():
                nn.init.uniform_(p, -self.init_range, self.init_range)

    def init_hidden(self, batch_size: int) -> Hidden:
        weight = self.decoder.weight
        h = weight.new_zeros(self.num_layers, batch_size, self.hidden_dim)
        return (h, h.clone()) if self.cell == "lstm" else h

    def features(self, x: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """x (B, T) token ids -> last layer's outputs after dropout (B, T, H), new hidden state."""
        emb = self.embedding(x)  # (B, T, E)
        if self.dropout_embedding:
            emb = embedding_dropout(emb, x, self.vocab_size, self.dropout_embedding, self.training)
        if not self.layerwise:
            raw, hidden = self.rnn(self.drop(emb), hidden)  # (B, T, H)
            out = self.drop(raw)
        elif self.locked:
            emb = locked_dropout(emb, self.dropout_input, self.training)
            raw, hidden = run_layers(
                self.rnn, emb, hidden, self.dropout_hidden, True, self.weight_drop
            )
            out = locked_dropout(raw, self.dropout, self.training)
        else:  # weight drop with the classic element-wise dropout
            raw, hidden = run_layers(
                self.rnn, self.drop(emb), hidden, self.dropout_hidden, False, self.weight_drop
            )
            out = self.drop(raw)
        if self.training and (self.ar_alpha or self.tar_beta):
            # AR on the dropped output, TAR on the raw output's step-to-step change (AWD-LSTM).
            penalty = out.new_zeros(())
            if self.ar_alpha:
                penalty = penalty + self.ar_alpha * out.pow(2).mean()
            if self.tar_beta and raw.size(1) > 1:
                penalty = penalty + self.tar_beta * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
            self._penalty = penalty
        return out, hidden

    def pop_penalty(self) -> Tensor | None:
        """The AR + TAR penalty of the last training-mode forward (None when both are off), then forgets
        it. The training loop adds it to the cross-entropy it minimises; it is not part of the logged loss."""
        penalty, self._penalty = self._penalty, None
        return penalty

    def forward(self, x: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """x (B, T) token ids -> logits (B, T, V), new hidden state."""
        out, hidden = self.features(x, hidden)
        return self.decoder(out), hidden


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


__all__ = ["CELLS", "RNNLM", "Hidden", "detach_hidden", "num_parameters"]
