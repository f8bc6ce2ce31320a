"""The residual block around a bare cell, as the minGRU/minLSTM paper's language models use it
(Feng et al. 2024, appendix C; also the xLSTM and Mamba-style pre-norm blocks), width D throughout:

    x = x + Conv_k(x)              optional (conv_kernel >= 2): a causal depthwise convolution
    x = x + cell(RMSNorm(x))
    x = x + MLP(RMSNorm(x))        optional (mlp_mult > 0): a gated MLP, mlp_mult * D inside

`model.block=false` runs the bare cell instead, to compare the two. The state is the cell's, plus the
convolution's last k-1 inputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from rnnlm.models.cells.base import CausalConv, GatedMLP, Recurrence, State


class ResidualBlock(Recurrence):
    def __init__(self, cell: Recurrence, conv_kernel: int = 0, mlp_mult: float = 0.0) -> None:
        super().__init__()
        if cell.in_dim != cell.out_dim:
            raise ValueError(
                "a residual block needs a cell whose input and output widths are equal"
            )
        dim = cell.in_dim
        self.in_dim = self.out_dim = dim
        self.conv = CausalConv(dim, conv_kernel) if conv_kernel >= 2 else None
        self.norm = nn.RMSNorm(dim)
        self.cell = cell
        self.mlp_norm = nn.RMSNorm(dim) if mlp_mult else None
        self.mlp = GatedMLP(dim, mlp_mult) if mlp_mult else None

    def init_state(self, batch: int, like: Tensor) -> State:
        own = (self.conv.init_state(batch, like),) if self.conv is not None else ()
        return (*self.cell.init_state(batch, like), *own)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        n = len(state) - (self.conv is not None) if state is not None else 0
        cell_state = state[:n] if state is not None else None
        extra: tuple = ()
        if self.conv is not None:
            c, past = self.conv(x, None if state is None else state[-1])
            x = x + c
            extra = (past,)
        y, cell_state = self.cell(self.norm(x), cell_state)
        x = x + y
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x, (*cell_state, *extra)


__all__ = ["ResidualBlock"]
