"""Hawk: the RG-LRU residual block of De et al. 2024 ("Griffin: Mixing Gated Linear Recurrences with
Local Attention for Efficient Language Models", section 2.4, figure 2).

The block (pre-norm, width D):

    y = RMSNorm(x)
    x = x + W_out( gelu(W_gate y)  *  RG-LRU(Conv4(W_in y)) )       the gated branch and the recurrent one
    x = x + MLP(RMSNorm(x))                                          a gated MLP (mlp_mult * D inside)

The Real-Gated Linear Recurrent Unit on its input u_t (eq. 1-4):

    r_t = sigmoid(W_a u_t + b_a)        recurrence gate
    i_t = sigmoid(W_x u_t + b_x)        input gate
    a_t = a^(c r_t),  a = sigmoid(L)    c = 8; L learned per channel, a^c uniform in [0.9, 0.999] at init
    h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * u_t)

computed as log a_t = -c r_t softplus(-L), with the recurrence and its state in float32 (the paper's
advice; under bf16 autocast too). The state is (h, the convolution's last 3 inputs). W_a and W_x are
dense here (the paper uses block-diagonal ones, one block per head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlm.models.cells.base import (
    CausalConv,
    GatedMLP,
    Recurrence,
    State,
    at_least_fp32,
    state_rows,
)
from rnnlm.models.scan import linear_scan

C = 8.0


class RGLRU(nn.Module):
    def __init__(self, dim: int, scan: str = "auto") -> None:
        super().__init__()
        self.scan = scan
        self.gates = nn.Linear(dim, 2 * dim)  # W_a and W_x
        self.log_a_param = nn.Parameter(torch.empty(dim))  # L
        with torch.no_grad():
            a_c = torch.empty(dim).uniform_(0.9, 0.999)  # a^c
            a = a_c ** (1 / C)
            self.log_a_param.copy_(torch.log(a) - torch.log1p(-a))  # L = logit(a)

    def forward(self, u: Tensor, h0: Tensor | None) -> Tensor:
        """u (T, B, D) -> every h_t (T, B, D), in float32."""
        r, i = torch.sigmoid(at_least_fp32(self.gates(u))).chunk(2, -1)
        u = at_least_fp32(u)
        log_a = -C * r * F.softplus(-self.log_a_param.to(u.dtype))  # log a_t = c r_t log sigmoid(L)
        a = torch.exp(log_a)
        # sqrt(1 - a_t^2), exact near a_t = 1; a gate at exactly 1 (r_t underflowed to 0) would give
        # sqrt(0), whose gradient is infinite: the smallest normal number instead
        scale = torch.sqrt((-torch.expm1(2 * log_a)).clamp_min(torch.finfo(log_a.dtype).tiny))
        return linear_scan(a, scale * i * u, h0, self.scan)


class HawkBlock(Recurrence):
    def __init__(
        self, dim: int, mlp_mult: float = 3.0, conv_kernel: int = 4, scan: str = "auto"
    ) -> None:
        super().__init__()
        if conv_kernel < 2:
            raise ValueError(f"model.conv_kernel={conv_kernel} must be >= 2 for model=hawk")
        self.in_dim = self.out_dim = dim
        self.norm = nn.RMSNorm(dim)
        self.gate = nn.Linear(dim, dim)
        self.inp = nn.Linear(dim, dim)
        self.conv = CausalConv(dim, conv_kernel)
        self.rglru = RGLRU(dim, scan)
        self.out = nn.Linear(dim, dim)
        self.mlp_norm = nn.RMSNorm(dim) if mlp_mult else None
        self.mlp = GatedMLP(dim, mlp_mult) if mlp_mult else None

    def init_state(self, batch: int, like: Tensor) -> State:
        h = at_least_fp32(like.new_zeros(1, batch, self.out_dim))
        return h, self.conv.init_state(batch, like)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        y = self.norm(x)
        u, past = self.conv(self.inp(y), None if state is None else state[1])
        h = self.rglru(u, state_rows(state, 0))  # (T, B, D) float32
        x = x + self.out(F.gelu(self.gate(y)) * h.to(x.dtype))
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x, (h[-1:], past)


__all__ = ["RGLRU", "HawkBlock"]
