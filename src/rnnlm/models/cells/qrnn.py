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
from rnnlm.models.fused_scan import gated_scan, require_library, use_fused
from rnnlm.models.regularization import dropout
from rnnlm.models.scan import linear_scan


class QRNN(Recurrence):
    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        window: int = 1,
        weight_drop: float = 0.0,
        scan: str = "auto",
    ) -> None:
        super().__init__()
        if window not in (1, 2):
            raise ValueError(f"model.window={window} must be 1 or 2 for model=qrnn")
        self.in_dim, self.out_dim = in_dim, hidden_dim
        self.window, self.weight_drop, self.scan = window, weight_drop, scan
        if scan == "fused":  # refused when the model is built, not at its first step
            require_library()
        self.linear = nn.Linear(window * in_dim, 3 * hidden_dim)

    def init_state(self, batch: int, like: Tensor) -> State:
        c = at_least_fp32(like.new_zeros(1, batch, self.out_dim))
        if self.window == 1:
            return (c,)
        return c, like.new_zeros(1, batch, self.in_dim)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        weight = self.linear.weight  # (3H, k * in): [W_{t-1} | W_t] for k = 2
        if self.training and self.weight_drop > 0:
            weight = dropout(weight, self.weight_drop, True)
        xc = x  # cast once for both products, not once for each, under autocast on a CPU
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            xc = x.to(torch.get_autocast_dtype("cpu"))
        pre2 = None  # W_{t-1} x_{t-1}: x shifted by one, the carried last input first
        if self.window == 1:
            pre = F.linear(xc, weight, self.linear.bias)  # (T, B, 3H)
        else:
            past = state[1][0].to(xc.dtype) if state is not None else xc.new_zeros(x.shape[1:])
            if x.size(0) == 1:  # one token (generation): one product of [x_{t-1}, x_t]
                pre = F.linear(torch.cat([past.unsqueeze(0), xc], -1), weight, self.linear.bias)
            else:  # two products of x, no (T, B, 2 in) copy: W_t x_t + b, and W_{t-1} x_{t-1}
                pre = F.linear(xc, weight[:, self.in_dim :], self.linear.bias)
                pre2 = F.linear(torch.cat([past.unsqueeze(0), xc[:-1]]), weight[:, : self.in_dim])
        if use_fused(self.scan, pre):  # gates, scan and output in one C++ loop
            h, last = gated_scan("qrnn", pre, state_rows(state, 0), pre2)  # h in pre's dtype
        else:
            pre = at_least_fp32(pre if pre2 is None else pre + pre2)
            z, f, o = pre.chunk(3, -1)
            f = torch.sigmoid(f)
            c = linear_scan(f, (1 - f) * torch.tanh(z), state_rows(state, 0), self.scan)
            h, last = (torch.sigmoid(o) * c).to(x.dtype), c[-1]  # (T, B, H), (B, H)
        last = last.unsqueeze(0)
        return h, ((last,) if self.window == 1 else (last, x[-1:]))


__all__ = ["QRNN"]
