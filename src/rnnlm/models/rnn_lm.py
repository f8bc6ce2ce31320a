"""A recurrent language model: embedding -> stack of RNN/LSTM/GRU layers -> dropout -> output layer.

The output layer is a full softmax (a linear decoder over the vocabulary) or, for vocabularies of 100k+
words, an adaptive softmax (Grave et al. 2017; `softmax="adaptive"`). Training and evaluation call
`nll(x, y, hidden)`, which with the full softmax runs the fused, chunked linear + cross-entropy of
`rnnlm.models.loss` instead of materialising the (B*T, V) logits; `forward` still returns logits (or, with
the adaptive softmax, log-probabilities) for sampling and scoring.

Shapes use B = batch (columns of the token stream), T = window length (bptt), V = vocabulary size,
E = embedding size, H = hidden size, L = number of layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlm.models.loss import linear_cross_entropy

# An LSTM carries (h, c), the other cells carry h alone; each tensor is (L, B, H).
Hidden = Tensor | tuple[Tensor, Tensor]

CELLS: dict[str, tuple[type[nn.RNNBase], dict]] = {
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}


SOFTMAXES = ("full", "adaptive")


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
        adaptive_div_value: float = 4.0,
        fused_loss: bool = True,
        sparse_embedding: bool = False,
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
        if softmax not in SOFTMAXES:
            raise ValueError(
                f"model.softmax={softmax!r} is not known; choose one of {list(SOFTMAXES)}"
            )
        cutoffs: list[int] = []
        if softmax == "adaptive":
            cutoffs = [int(c) for c in (adaptive_cutoffs or ())]
            if not cutoffs:
                raise ValueError(
                    "model.softmax=adaptive needs model.adaptive_cutoffs, increasing ids that split the "
                    "vocabulary (most frequent first) into a head and tail clusters, e.g. [20000, 100000]"
                )
            if cutoffs != sorted(set(cutoffs)) or cutoffs[0] < 1 or cutoffs[-1] >= vocab_size:
                raise ValueError(
                    f"model.adaptive_cutoffs={cutoffs} must be increasing integers between 1 and "
                    f"vocab_size - 1 = {vocab_size - 1}"
                )
            if tie_weights:
                raise ValueError(
                    "model.tie_weights=true does not apply to model.softmax=adaptive (its clusters have "
                    "their own projections): set model.tie_weights=false"
                )
        if sparse_embedding and tie_weights:
            raise ValueError(
                "model.sparse_embedding=true cannot be combined with model.tie_weights=true (the tied "
                "decoder needs a dense gradient): set one of them to false"
            )
        rnn_cls, extra = CELLS[cell]
        self.cell = cell
        self.vocab_size = vocab_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.softmax = softmax
        self.fused_loss = fused_loss
        self.embedding = nn.Embedding(vocab_size, embedding_dim, sparse=sparse_embedding)
        # Time-major inside (T, B, .): the layout the RNN kernels use, so no transposed copies.
        self.rnn = rnn_cls(
            embedding_dim,
            hidden_dim,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            **extra,
        )
        self.drop = nn.Dropout(dropout)
        self.decoder: nn.Module
        if softmax == "adaptive":
            self.decoder = nn.AdaptiveLogSoftmaxWithLoss(
                hidden_dim, vocab_size, cutoffs, div_value=adaptive_div_value
            )
        else:
            self.decoder = nn.Linear(hidden_dim, vocab_size)
            if tie_weights:
                # One tensor, two uses (Press & Wolf 2017; Inan et al. 2017).
                self.decoder.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if self.softmax == "full":
            nn.init.zeros_(self.decoder.bias)
            if self.decoder.weight is not self.embedding.weight:
                nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_hidden(self, batch_size: int) -> Hidden:
        weight = self.embedding.weight
        h = weight.new_zeros(self.num_layers, batch_size, self.hidden_dim)
        return (h, h.clone()) if self.cell == "lstm" else h

    def _features_tm(self, x: Tensor, hidden: Hidden | None) -> tuple[Tensor, Hidden]:
        """x (B, T) token ids -> last layer's outputs after dropout, time-major (T, B, H)."""
        emb = self.drop(self.embedding(x.t()))  # (T, B, E)
        out, hidden = self.rnn(emb, hidden)  # (T, B, H)
        return self.drop(out), hidden

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
            logits = self.decoder.log_prob(out.reshape(t * b, -1)).view(t, b, -1)
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
            logp = self.decoder(h, target).output
            loss = -(logp.sum() if reduction == "sum" else logp.mean())
        elif (
            self.fused_loss
            and not torch.compiler.is_compiling()
            and not torch.is_autocast_enabled(h.device.type)
        ):
            loss = linear_cross_entropy(
                h, self.decoder.weight, self.decoder.bias, target, reduction=reduction
            )
        else:
            loss = F.cross_entropy(self.decoder(h).float(), target, reduction=reduction)
        return loss, hidden


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
