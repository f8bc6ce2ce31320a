"""QRNN with fo-pooling (Bradbury, Merity, Xiong & Socher 2016, "Quasi-Recurrent Neural Networks").

The gates come from a masked convolution of width k over the inputs (k = 1: x_t alone; k = 2: x_{t-1}
and x_t), and the recurrence is element-wise:

    [z_t, f_t, o_t] = [tanh, sigmoid, sigmoid](W [x_{t-k+1}, ..., x_t] + b)
    c_t = f_t * c_{t-1} + (1 - f_t) * z_t          (a scan: a = f, b = (1 - f) * z)
    h_t = o_t * c_t

With k = 2 the state carries the previous window's last input beside c, so the first token of a
window sees the last of the one before, as in one long sequence. `weight_drop` is DropConnect on W,
one mask per window, as AWD-QRNN regularises its gates (Merity, Keskar & Socher 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlm.models.cells.base import Recurrence, State, at_least_fp32, state_rows
from rnnlm.models.regularization import dropout
from rnnlm.models.scan import linear_scan


class QRNN(Recurrence):
    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        window: int = 1,
        weight_drop: float = 0.0,
        scan: str = "chunked",
    ) -> None:
        super().__init__()
        if window not in (1, 2):
            raise ValueError(f"model.window={window} must be 1 or 2 for model=qrnn")
        self.in_dim, self.out_dim = in_dim, hidden_dim
        self.window, self.weight_drop, self.scan = window, weight_drop, scan
        self.linear = nn.Linear(window * in_dim, 3 * hidden_dim)

    def init_state(self, batch: int, like: Tensor) -> State:
        c = at_least_fp32(like.new_zeros(1, batch, self.out_dim))
        if self.window == 1:
            return (c,)
        return c, like.new_zeros(1, batch, self.in_dim)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        inp = x
        if self.window == 2:
            past = state[1][0].to(x.dtype) if state is not None else x.new_zeros(x.shape[1:])
            inp = torch.cat([torch.cat([past.unsqueeze(0), x[:-1]]), x], -1)  # [x_{t-1}, x_t]
        weight = self.linear.weight
        if self.training and self.weight_drop > 0:
            weight = dropout(weight, self.weight_drop, True)
        z, f, o = at_least_fp32(F.linear(inp, weight, self.linear.bias)).chunk(3, -1)
        f = torch.sigmoid(f)
        c = linear_scan(f, (1 - f) * torch.tanh(z), state_rows(state, 0), self.scan)  # (T, B, H)
        h = (torch.sigmoid(o) * c).to(x.dtype)
        new = (c[-1:],) if self.window == 1 else (c[-1:], x[-1:])
        return h, new


__all__ = ["QRNN"]
