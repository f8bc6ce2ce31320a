"""num_layers parallel cells between RNNLM's embedding and its output layer, time-major (T, B, .).

Two shapes (`model.block`):
- bare cells, as nn.GRU stacks them: layer 1 reads the embedding (E -> H), the others H -> H, the last
  H -> last_hidden_dim; dropout between layers (the model's `dropout` / `dropout_hidden`).
- residual blocks of width H (block.ResidualBlock, or Hawk's own block): the embedding projected to H
  (when E != H), the blocks, a final RMSNorm, and a projection to last_hidden_dim when that is set.
The state is every layer's state tuple, flattened layer after layer (a tuple of (1, B, ...) tensors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from rnnlm.models.cells.base import Recurrence, State
from rnnlm.models.cells.block import ResidualBlock
from rnnlm.models.cells.hawk import HawkBlock
from rnnlm.models.cells.keys import PARALLEL_CELLS
from rnnlm.models.cells.mingru import MinGRU, MinLSTM
from rnnlm.models.cells.mlstm import MLSTM
from rnnlm.models.cells.qrnn import QRNN


def _cell(name: str, n_in: int, n_out: int, opt: dict[str, Any]) -> Recurrence:
    scan = opt.get("scan") or "auto"
    if name == "mingru":
        return MinGRU(n_in, n_out, scan)
    if name == "minlstm":
        return MinLSTM(n_in, n_out, scan)
    if name == "qrnn":
        return QRNN(n_in, n_out, opt.get("window") or 1, opt.get("weight_drop") or 0.0, scan)
    if name == "mlstm":
        return MLSTM(n_in, n_out, opt.get("heads") or 4, opt.get("chunk_size") or 64)
    raise ValueError(f"model.cell={name!r} is not a parallel cell; choose one of {PARALLEL_CELLS}")


class CellStack(nn.Module):
    def __init__(
        self,
        cell: str,
        in_dim: int,
        hidden_dim: int,
        num_layers: int,
        out_dim: int,
        between: Callable[[Tensor], Tensor],
        **options: Any,
    ) -> None:
        super().__init__()
        self.between = between  # dropout on what one layer hands to the next
        self.blocks = cell == "hawk" or bool(options.get("block"))
        conv, mlp = options.get("conv_kernel") or 0, options.get("mlp_mult") or 0.0
        layers: list[Recurrence] = []
        if self.blocks:
            self.inp = nn.Linear(in_dim, hidden_dim) if in_dim != hidden_dim else nn.Identity()
            for _ in range(num_layers):
                if cell == "hawk":
                    layers.append(
                        HawkBlock(hidden_dim, mlp, conv or 4, options.get("scan") or "auto")
                    )
                else:
                    layers.append(
                        ResidualBlock(_cell(cell, hidden_dim, hidden_dim, options), conv, mlp)
                    )
            self.norm = nn.RMSNorm(hidden_dim)
            self.out = nn.Linear(hidden_dim, out_dim) if out_dim != hidden_dim else nn.Identity()
        else:
            sizes = [hidden_dim] * (num_layers - 1) + [out_dim]
            for n_in, n_out in zip([in_dim, *sizes[:-1]], sizes, strict=True):
                layers.append(_cell(cell, n_in, n_out, options))
        self.layers = nn.ModuleList(layers)
        self.arity = [len(layer.init_state(1, self._probe())) for layer in layers]

    def _probe(self) -> Tensor:
        return next(self.parameters())

    def init_state(self, batch: int, like: Tensor) -> State:
        return tuple(t for layer in self.layers for t in layer.init_state(batch, like))

    def _split(self, state: State | None) -> list[State | None]:
        if state is None:
            return [None] * len(self.layers)
        parts, k = [], 0
        for n in self.arity:
            parts.append(tuple(state[k : k + n]))
            k += n
        return parts

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (T, B, E) -> the last layer's output (T, B, out_dim), the new state."""
        new: list[Tensor] = []
        if self.blocks:
            x = self.inp(x)
        for n, (layer, s) in enumerate(zip(self.layers, self._split(state), strict=True)):
            x, s = layer(x, s)
            new.extend(s)
            if n < len(self.layers) - 1:
                x = self.between(x)
        if self.blocks:
            x = self.out(self.norm(x))
        return x, tuple(new)


__all__ = ["CellStack"]
