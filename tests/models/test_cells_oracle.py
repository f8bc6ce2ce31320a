"""rnnlm's minGRU, minLSTM and mLSTM against other authors' pure-PyTorch code (float64, carried state):
lucidrains' minGRU-pytorch (the paper's log-space form) and NX-AI's mlstm_kernels (xLSTM's recurrent
reference). Slow: run with `make test-slow`; the packages come with the dev extra."""

from __future__ import annotations

import pytest
import torch

from rnnlm.models.cells.mingru import MinGRU, MinLSTM
from rnnlm.models.cells.mlstm import chunkwise

pytestmark = pytest.mark.slow
B, T, D = 3, 96, 8


def _copy_projection(ours: torch.nn.Linear, theirs: torch.nn.Linear, order: list[int]) -> None:
    """Our fused projection from theirs (no bias there), its gate blocks in our order."""
    blocks = theirs.weight.detach().chunk(len(order), 0)
    with torch.no_grad():
        ours.weight.copy_(torch.cat([blocks[k] for k in order]))
        ours.bias.zero_()


@pytest.mark.parametrize("backend", ["chunked", "log", "sequential"])
def test_min_gru_equals_min_gru_pytorch_across_windows(backend: str) -> None:
    from minGRU_pytorch.minGRU import minGRU

    torch.manual_seed(0)
    theirs = minGRU(D).double()
    ours = MinGRU(D, D, backend).double()
    _copy_projection(ours.proj, theirs.to_hidden_and_gate, [1, 0])  # theirs: hidden, gate
    x = torch.randn(B, 2 * T, D, dtype=torch.float64)
    out1, h1 = theirs(x[:, :T], return_next_prev_hidden=True)
    out2, _ = theirs(x[:, T:], h1, return_next_prev_hidden=True)
    y1, state = ours(x[:, :T].transpose(0, 1))
    y2, _ = ours(x[:, T:].transpose(0, 1), state)
    torch.testing.assert_close(torch.cat([y1, y2]).transpose(0, 1), torch.cat([out1, out2], 1))
    step, _ = theirs(x[:, T : T + 1], h1, return_next_prev_hidden=True)  # their step form
    torch.testing.assert_close(ours.step(x[:, T], state)[0], step[:, 0])


def test_min_lstm_equals_min_gru_pytorch() -> None:
    from minGRU_pytorch.minLSTM import minLSTM

    torch.manual_seed(0)
    theirs = minLSTM(D).double()
    ours = MinLSTM(D, D).double()
    _copy_projection(ours.proj, theirs.to_hidden_and_f_i_gate, [1, 2, 0])  # theirs: hidden, f, i
    x = torch.randn(B, T, D, dtype=torch.float64)
    out, h = theirs(x, return_next_prev_hidden=True)  # from h_0 = 0
    y, state = ours(x.transpose(0, 1))
    torch.testing.assert_close(y.transpose(0, 1), out)
    # Their step form from a carried state (their window form re-reads a carried h through log g).
    step, _ = theirs(x[:, :1], h, return_next_prev_hidden=True)
    torch.testing.assert_close(ours.step(x[:, 0], state)[0], step[:, 0])


@pytest.mark.parametrize("chunk", [16, 37])
def test_mlstm_chunkwise_equals_mlstm_kernels_recurrent(chunk: int) -> None:
    pytest.importorskip("mlstm_kernels", reason="mlstm_kernels needs Python >= 3.11")
    from mlstm_kernels.torch.recurrent.native_sequence import mlstm_recurrent_sequence__native_fw

    torch.manual_seed(0)
    heads, d = 2, 4
    q, k, v = (torch.randn(B, heads, T, d, dtype=torch.float64) for _ in range(3))
    i = 3 * torch.randn(B, heads, T, dtype=torch.float64)  # exponential gates far from 1
    f = 3 * torch.randn(B, heads, T, dtype=torch.float64) + 2
    C0 = torch.randn(B, heads, d, d, dtype=torch.float64)
    n0 = torch.randn(B, heads, d, dtype=torch.float64)
    m0 = torch.randn(B, heads, dtype=torch.float64)
    h_ref, (C_ref, n_ref, m_ref) = mlstm_recurrent_sequence__native_fw(
        q, k, v, i, f, C0, n0, m0[..., None], return_last_states=True, eps=0.0,
        dtype_state=torch.float64,
    )  # fmt: skip
    # Theirs scales q by d^-1/2 and ours k: the same numerator, denominator and stabiliser.
    h, C, n, m = chunkwise(
        q,
        k / d**0.5,
        v,
        i,
        torch.nn.functional.logsigmoid(f),
        C0 / d**0.5,
        n0 / d**0.5,
        m0,
        chunk=chunk,
    )
    torch.testing.assert_close(h, h_ref)
    # The carried state as theirs once both are brought to the same stabiliser (C* = exp(m) C).
    scale = torch.exp(m - m_ref[..., 0])
    torch.testing.assert_close(C * scale[..., None, None] * d**0.5, C_ref)
    torch.testing.assert_close(n * scale[..., None] * d**0.5, n_ref)
