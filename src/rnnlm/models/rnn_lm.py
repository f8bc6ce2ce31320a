"""A recurrent language model: embedding -> stack of RNN/LSTM/GRU layers -> dropout -> linear decoder.

Shapes use B = batch (columns of the token stream), T = window length (bptt), V = vocabulary size,
E = embedding size, H = hidden size, L = number of layers.
"""

from __future__ import annotations

from torch import Tensor, nn

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
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout={dropout} must be in [0, 1)")
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
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = rnn_cls(
            embedding_dim,
            hidden_dim,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
            **extra,
        )
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden_dim, vocab_size)
        if tie_weights:
            # One tensor, two uses (Press & Wolf 2017; Inan et al. 2017).
            self.decoder.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if self.decoder.weight is not self.embedding.weight:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_hidden(self, batch_size: int) -> Hidden:
        weight = self.decoder.weight
        h = weight.new_zeros(self.num_layers, batch_size, self.hidden_dim)
        return (h, h.clone()) if self.cell == "lstm" else h

    def features(self, x: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """x (B, T) token ids -> last layer's outputs after dropout (B, T, H), new hidden state."""
        emb = self.drop(self.embedding(x))  # (B, T, E)
        out, hidden = self.rnn(emb, hidden)  # (B, T, H)
        return self.drop(out), hidden

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
