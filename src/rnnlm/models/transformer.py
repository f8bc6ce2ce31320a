"""A small causal Transformer language model, the attention baseline beside the recurrent cells.

GPT-style: token embedding + learned absolute positions -> `num_layers` pre-norm blocks (LayerNorm ->
causal multi-head self-attention -> residual; LayerNorm -> MLP with GELU -> residual) -> LayerNorm ->
decoder (tied to the embedding by default).

It has the recurrent models' interface, `forward(x, hidden) -> (logits, hidden)`, so the data layout,
metrics, checkpoints, evaluation and generation are the same. The "hidden state" is the ids of the last
`memory` tokens read: the next call sees them as context (recomputed, nothing else is carried, so there is
no gradient through it), which gives validation windows and generated tokens the text before them. A
window plus its context never exceeds `max_len` positions: longer inputs are read in consecutive chunks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlm import schema


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float, dropout_attention: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)
        self.dropout_attention = dropout_attention

    def forward(self, h: Tensor) -> Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).split(d, dim=2)
        q, k, v = (
            z.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2) for z in (q, k, v)
        )
        att = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout_attention if self.training else 0.0
        )  # (B, heads, T, d/heads)
        h = h + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, d)))
        return h + self.drop(self.mlp(self.ln2(h)))


class TransformerLM(nn.Module):
    """Next-token model over `vocab_size` ids; `hidden` is the (B, <= memory) ids of the preceding text."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        dropout: float = 0.1,
        dropout_attention: float = 0.0,
        max_len: int = 256,
        memory: int = 128,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        schema.check(
            "model",
            vocab_size=vocab_size,
            embedding_dim=embedding_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            max_len=max_len,
            dropout=dropout,
            dropout_attention=dropout_attention,
        )
        if embedding_dim % num_heads:
            raise ValueError(
                f"model.embedding_dim={embedding_dim} must be a multiple of model.num_heads={num_heads}"
            )
        if not 0 <= memory < max_len:
            raise ValueError(
                f"model.memory={memory} must be in [0, model.max_len={max_len}): a window needs room"
            )
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.memory = memory
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.position = nn.Embedding(max_len, embedding_dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(embedding_dim, num_heads, dropout, dropout_attention) for _ in range(num_layers)
        )
        self.ln_f = nn.LayerNorm(embedding_dim)
        self.decoder = nn.Linear(embedding_dim, vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        self.reset_parameters(num_layers)

    def reset_parameters(self, num_layers: int) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, 0.02)
        for block in self.blocks:  # GPT-2: residual projections scaled by depth
            nn.init.normal_(block.proj.weight, 0.0, 0.02 / math.sqrt(2 * num_layers))
            nn.init.normal_(block.mlp[2].weight, 0.0, 0.02 / math.sqrt(2 * num_layers))

    def init_hidden(self, batch_size: int) -> None:
        return None

    def _window(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor | None]:
        t = x.size(1)
        if context is not None and context.size(1):
            ctx = torch.cat([context[:, max(0, context.size(1) - (self.max_len - t)) :], x], 1)
        else:
            ctx = x
        pos = torch.arange(ctx.size(1), device=x.device)
        h = self.drop(self.embedding(ctx) + self.position(pos))
        for block in self.blocks:
            h = block(h)
        logits = self.decoder(self.ln_f(h[:, -t:]))
        new_context = ctx[:, ctx.size(1) - self.memory :] if self.memory else None
        return logits, new_context

    def forward(self, x: Tensor, hidden: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """x (B, T) token ids -> logits (B, T, V), the ids to read as context next time."""
        chunk = self.max_len - self.memory
        if x.size(1) <= chunk:
            return self._window(x, hidden)
        outs = []
        for piece in x.split(chunk, dim=1):
            logits, hidden = self._window(piece, hidden)
            outs.append(logits)
        return torch.cat(outs, 1), hidden

    def nll(
        self, x: Tensor, y: Tensor, hidden: Tensor | None = None, reduction: str = "sum"
    ) -> tuple[Tensor, Tensor | None]:
        """Cross-entropy (nats, "sum" or "mean" over all B*T tokens) of targets y given x, new context
        (the recurrent models' training and evaluation entry point)."""
        logits, hidden = self(x, hidden)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction=reduction)
        return loss, hidden


__all__ = ["TransformerLM"]
