"""mLSTM: xLSTM's matrix-memory cell with stabilised exponential gating (Beck et al. 2024, "xLSTM:
Extended Long Short-Term Memory", section 2.3, eq. 19-27), computed chunkwise-parallel over a window.

Per head (d = hidden_dim / heads), with q_t, k_t = W_k x_t / sqrt(d), v_t, o_t = sigmoid(W_o x_t) and the
scalar gate pre-activations i~_t (input, exponential) and f~_t (forget, log f_t = logsigmoid(f~_t)):

    m_t = max(log f_t + m_{t-1}, i~_t)                     the stabiliser
    i'_t = exp(i~_t - m_t),   f'_t = exp(log f_t + m_{t-1} - m_t)
    C_t = f'_t C_{t-1} + i'_t k_t v_t^T                    (d x d) matrix memory
    n_t = f'_t n_{t-1} + i'_t k_t                          normaliser
    h_t = o_t * (C_t^T q_t) / max(|n_t . q_t|, exp(-m_t))

`recurrent` is these equations one token at a time (the step form). The window's form: with
F_t = sum_{s<=t} log f_s, unrolling gives C*_t = exp(F_t) C*_0 + sum_{s<=t} exp(F_t - F_s + i~_s) k_s v_s^T
for the unstabilised C* = exp(m) C, and h_t depends on C*, n* only (the stabiliser cancels), so within a
chunk of L tokens the outputs are a masked, decayed attention over the chunk plus the memory carried in,
and only (C, n, m) is passed from chunk to chunk: L^2 work per chunk instead of T^2, T/L sequential
steps instead of T. The state is (C, n, m): (1, B, heads, d, d), (1, B, heads, d), (1, B, heads).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlm.models.cells.base import Recurrence, State, at_least_fp32
from rnnlm.models.cells.keys import check_heads

# i~ of the padding after a window's end: exp(i~ - m) is 0, the memory passes unchanged
NO_INPUT = -1e4


def recurrent(
    q: Tensor, k: Tensor, v: Tensor, i: Tensor, log_f: Tensor, C: Tensor, n: Tensor, m: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The equations above, token by token. q, k, v (B, H, T, d); i, log_f (B, H, T); C (B, H, d, d),
    n (B, H, d), m (B, H). Returns h~ (B, H, T, d) (before the output gate) and the new C, n, m."""
    out = []
    for t in range(q.size(2)):
        m_new = torch.maximum(log_f[:, :, t] + m, i[:, :, t])
        i_t = torch.exp(i[:, :, t] - m_new)
        f_t = torch.exp(log_f[:, :, t] + m - m_new)
        C = f_t[..., None, None] * C + i_t[..., None, None] * (
            k[:, :, t, :, None] * v[:, :, t, None, :]
        )
        n = f_t[..., None] * n + i_t[..., None] * k[:, :, t]
        qt = q[:, :, t]
        num = torch.einsum("bhd,bhde->bhe", qt, C)
        den = (n * qt).sum(-1).abs().maximum(torch.exp(-m_new))
        out.append(num / den[..., None])
        m = m_new
    return torch.stack(out, 2), C, n, m


def chunkwise(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i: Tensor,
    log_f: Tensor,
    C: Tensor,
    n: Tensor,
    m: Tensor,
    chunk: int = 64,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The same as `recurrent`, chunk by chunk (see the module docstring)."""
    bsz, heads, t, d = q.shape
    L = min(chunk, t)
    nc = -(-t // L)
    pad = nc * L - t
    if pad:
        q, k, v = (F.pad(z, (0, 0, 0, pad)) for z in (q, k, v))
        i = F.pad(i, (0, pad), value=NO_INPUT)
        log_f = F.pad(log_f, (0, pad))  # f = 1: nothing forgotten in the padding
    q, k, v = (z.view(bsz, heads, nc, L, d) for z in (q, k, v))
    i, log_f = i.view(bsz, heads, nc, L), log_f.view(bsz, heads, nc, L)

    F_in = torch.cumsum(log_f, -1)  # (B, H, N, L): log of the forget product since chunk start
    F_end = F_in[..., -1]  # (B, H, N)
    # Each token's weight in its chunk's contribution to the memory at the chunk's end (log space).
    w = F_end[..., None] - F_in + i  # (B, H, N, L)
    m_w = w.max(-1).values.detach()  # stabilisers cancel: no gradient through them is exact
    e = torch.exp(w - m_w[..., None])
    S = torch.einsum("bhnl,bhnld,bhnle->bhnde", e, k, v)  # (B, H, N, d, d)
    s = torch.einsum("bhnl,bhnld->bhnd", e, k)  # (B, H, N, d)

    starts = []
    for c in range(nc):  # the memory entering each chunk: T / L steps
        starts.append((C, n, m))
        m_new = torch.maximum(F_end[:, :, c] + m, m_w[:, :, c])
        decay = torch.exp(F_end[:, :, c] + m - m_new)
        add = torch.exp(m_w[:, :, c] - m_new)
        C = decay[..., None, None] * C + add[..., None, None] * S[:, :, c]
        n = decay[..., None] * n + add[..., None] * s[:, :, c]
        m = m_new
    C0 = torch.stack([x[0] for x in starts], 2)  # (B, H, N, d, d)
    n0 = torch.stack([x[1] for x in starts], 2)  # (B, H, N, d)
    m0 = torch.stack([x[2] for x in starts], 2)  # (B, H, N)

    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    D = F_in[..., :, None] - F_in[..., None, :] + i[..., None, :]  # (B, H, N, L, L): t, s
    D = D.masked_fill(~causal, -math.inf)
    inter = F_in + m0[..., None]  # (B, H, N, L): the log weight of the memory carried in, at each t
    m_t = torch.maximum(inter, D.max(-1).values).detach()
    scores = torch.exp(D - m_t[..., None]) * torch.einsum("bhntd,bhnsd->bhnts", q, k)
    scale = torch.exp(inter - m_t)  # (B, H, N, L)
    num = scale[..., None] * torch.einsum("bhntd,bhnde->bhnte", q, C0) + scores @ v
    den = scale * torch.einsum("bhntd,bhnd->bhnt", q, n0) + scores.sum(-1)
    h = num / den.abs().maximum(torch.exp(-m_t))[..., None]
    return h.reshape(bsz, heads, nc * L, d)[:, :, :t], C, n, m


class MLSTM(Recurrence):
    def __init__(self, in_dim: int, hidden_dim: int, heads: int = 4, chunk: int = 64) -> None:
        super().__init__()
        check_heads(hidden_dim, heads)
        self.in_dim, self.out_dim, self.heads, self.chunk = in_dim, hidden_dim, heads, chunk
        self.d = hidden_dim // heads
        self.qkvo = nn.Linear(in_dim, 4 * hidden_dim)
        self.gates = nn.Linear(in_dim, 2 * heads)  # i~ and f~, one scalar per head
        with torch.no_grad():  # the initialisation of the xLSTM code: long memory at the start
            self.gates.weight.zero_()
            self.gates.bias[:heads].normal_(0.0, 0.1)
            self.gates.bias[heads:] = torch.linspace(3.0, 6.0, heads)

    def init_state(self, batch: int, like: Tensor) -> State:
        z = at_least_fp32(like.new_zeros(1, batch, self.heads))
        return (
            z.new_zeros(1, batch, self.heads, self.d, self.d),
            z.new_zeros(1, batch, self.heads, self.d),
            z,
        )

    def _split(self, x: Tensor) -> tuple[Tensor, ...]:
        """x (T, B, in) -> q, k, v (B, H, T, d), o (T, B, hidden), i, log f (B, H, T), in float32."""
        t, bsz, _ = x.shape
        q, k, v, o = at_least_fp32(self.qkvo(x)).chunk(4, -1)
        q, k, v = (z.view(t, bsz, self.heads, self.d).permute(1, 2, 0, 3) for z in (q, k, v))
        i, f = at_least_fp32(self.gates(x)).permute(1, 2, 0).chunk(2, 1)  # (B, H, T) each
        return q, k / math.sqrt(self.d), v, o, i, F.logsigmoid(f)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        t, bsz, _ = x.shape
        q, k, v, o, i, log_f = self._split(x)
        C, n, m = (s[0] for s in (state or self.init_state(bsz, x)))
        run = recurrent if t == 1 else chunkwise
        h, C, n, m = run(q, k, v, i, log_f, C, n, m, **({} if t == 1 else {"chunk": self.chunk}))
        h = h.permute(2, 0, 1, 3).reshape(t, bsz, self.out_dim)  # (T, B, hidden)
        return (torch.sigmoid(o) * h).to(x.dtype), (C[None], n[None], m[None])


__all__ = ["MLSTM", "chunkwise", "recurrent"]
