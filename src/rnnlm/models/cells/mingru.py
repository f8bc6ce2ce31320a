"""minGRU and minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?").

A GRU or LSTM whose gates read the input only, not h_{t-1}, which makes the recurrence linear in h and
the window one scan (rnnlm/models/scan.py):

    minGRU:   z_t = sigmoid(W_z x_t),  h~_t = g(W_h x_t)
              h_t = (1 - z_t) * h_{t-1} + z_t * h~_t                         a = 1 - z,  b = z * h~
    minLSTM:  f_t = sigmoid(W_f x_t),  i_t = sigmoid(W_i x_t),  h~_t = g(W_h x_t)
              f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)              (time-independent scale)
              h_t = f'_t * h_{t-1} + i'_t * h~_t                             a = f',  b = i' * h~

g is the paper's positive activation (base.g), used in its log-space implementation. The state is h.
The paper's block (norm, residual, optional convolution and MLP) is rnnlm/models/cells/block.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlm.models.cells.base import Recurrence, State, at_least_fp32, g, state_rows
from rnnlm.models.fused_scan import gated_scan, require_library, use_fused
from rnnlm.models.scan import linear_scan


class _MinRNN(Recurrence):
    gates = 2
    name = ""

    def __init__(self, in_dim: int, hidden_dim: int, scan: str = "auto") -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.scan = in_dim, hidden_dim, scan
        if scan == "fused":  # refused when the model is built, not at its first step
            require_library()
        self.proj = nn.Linear(in_dim, self.gates * hidden_dim)

    def init_state(self, batch: int, like: Tensor) -> State:
        return (at_least_fp32(like.new_zeros(1, batch, self.out_dim)),)

    def coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        pre = self.proj(x)  # (T, B, gates * H)
        if use_fused(self.scan, pre):  # gates and scan in one C++ loop, bf16 read as it is
            h, last = gated_scan(self.name, pre, state_rows(state, 0))
            return h, (last.unsqueeze(0),)  # h in pre's dtype (bf16 under autocast)
        a, b = self.coefficients(at_least_fp32(pre))  # in float32 under autocast
        h = linear_scan(a, b, state_rows(state, 0), self.scan)  # (T, B, H)
        return h.to(x.dtype), (h[-1:],)


class MinGRU(_MinRNN):
    gates = 2
    name = "mingru"

    def coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        z, candidate = pre.chunk(2, -1)
        return torch.sigmoid(-z), torch.sigmoid(z) * g(candidate)  # 1 - z, z * h~


class MinLSTM(_MinRNN):
    gates = 3
    name = "minlstm"

    def coefficients(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        f, i, candidate = pre.chunk(3, -1)
        # f / (f + i) = sigmoid(log f - log i), and log sigmoid(x) = -softplus(-x): no division of
        # small numbers, and i' from its own sigmoid (1 - f' would lose it where f' is near 1)
        d = F.softplus(-i) - F.softplus(-f)  # log f - log i
        return torch.sigmoid(d), torch.sigmoid(-d) * g(candidate)


__all__ = ["MinGRU", "MinLSTM"]
