"""The fused, chunked linear + cross-entropy equals F.cross_entropy in value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnlm.models import RNNLM
from rnnlm.models.loss import chunk_rows, linear_cross_entropy

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _inputs(n, h, v, dtype=torch.float32, scale=1.0, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, h, generator=g, dtype=dtype) * scale).requires_grad_()
    w = torch.randn(v, h, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(v, generator=g, dtype=dtype).requires_grad_() if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    return x, w, b, y


def _both(x, w, b, y, reduction, chunk_elements, grad_scale=1.0):
    params = [t for t in (x, w, b) if t is not None]
    fused = linear_cross_entropy(x, w, b, y, reduction=reduction, chunk_elements=chunk_elements)
    g_fused = torch.autograd.grad(fused * grad_scale, params)
    ref = F.cross_entropy(F.linear(x, w, b), y, reduction=reduction)
    g_ref = torch.autograd.grad(ref * grad_scale, params)
    return fused, ref, g_fused, g_ref


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("grad_scale", [1.0, 0.37])
def test_equals_cross_entropy_on_random_inputs(reduction, bias, grad_scale):
    # 300 tokens over a 1,000-word vocabulary, 64 rows per chunk: five chunks, the last one short.
    x, w, b, y = _inputs(300, 24, 1000, bias=bias)
    fused, ref, g_fused, g_ref = _both(x, w, b, y, reduction, 64 * 1000, grad_scale)
    torch.testing.assert_close(fused, ref, **TOL)
    for a, e in zip(g_fused, g_ref, strict=True):
        torch.testing.assert_close(a, e, **TOL)


@pytest.mark.parametrize("scale", [30.0, 1e3, 1e4])
def test_extreme_logits(scale):
    # Logits in the thousands: a naive exp overflows, and almost every probability underflows to 0.
    x, w, b, y = _inputs(97, 8, 50, scale=scale, seed=1)
    # Make some targets the argmax and some the argmin of their row.
    with torch.no_grad():
        logits = F.linear(x, w, b)
        y[::3] = logits[::3].argmax(1)
        y[1::3] = logits[1::3].argmin(1)
    for reduction in ("mean", "sum"):
        fused, ref, g_fused, g_ref = _both(x, w, b, y, reduction, 32 * 50)
        assert torch.isfinite(fused)
        torch.testing.assert_close(fused, ref, **TOL)
        for a, e in zip(g_fused, g_ref, strict=True):
            assert torch.isfinite(a).all()
            # float32 gradients of logits ~1e4 carry absolute rounding ~1e-3: compare relatively
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5 * max(1.0, e.abs().max().item()))


def test_extreme_logits_float64_exact():
    x, w, b, y = _inputs(64, 6, 40, dtype=torch.float64, scale=1e4, seed=2)
    fused, ref, g_fused, g_ref = _both(x, w, b, y, "sum", 16 * 40)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-9)
    for a, e in zip(g_fused, g_ref, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-9)


def test_gradcheck():
    x, w, b, y = _inputs(11, 3, 7, dtype=torch.float64, seed=3)
    assert torch.autograd.gradcheck(
        lambda x, w, b: linear_cross_entropy(x, w, b, y, "mean", chunk_elements=4 * 7), (x, w, b)
    )


def test_without_grad_and_int32_targets():
    x, w, b, y = _inputs(50, 5, 30, seed=4)
    with torch.no_grad():
        fused = linear_cross_entropy(x, w, b, y.int(), "sum", chunk_elements=8 * 30)
        ref = F.cross_entropy(F.linear(x, w, b), y, reduction="sum")
    torch.testing.assert_close(fused, ref, **TOL)


def test_only_some_inputs_need_gradients():
    x, w, b, y = _inputs(40, 5, 30, seed=5)
    w.requires_grad_(False)
    loss = linear_cross_entropy(x, w, b, y, "mean", chunk_elements=8 * 30)
    loss.backward()
    ref = F.cross_entropy(F.linear(x.detach().requires_grad_(), w, b.detach()), y)
    assert w.grad is None
    torch.testing.assert_close(loss, ref, **TOL)


def test_chunk_rows():
    assert chunk_rows(700, 13777) == (1 << 21) // 13777
    assert chunk_rows(8192, 66) == 8192  # a small vocabulary: one chunk
    assert chunk_rows(700, 250_000) == 32  # never fewer rows than a matmul needs
    assert chunk_rows(5, 250_000) == 5


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_model_nll_equals_cross_entropy_of_its_logits(cell):
    torch.manual_seed(0)
    model = RNNLM(97, cell=cell, embedding_dim=12, hidden_dim=10, num_layers=2).eval()
    x = torch.randint(0, 97, (3, 9))
    y = torch.randint(0, 97, (3, 9))
    logits, h1 = model(x)
    expected = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
    nll, h2 = model.nll(x, y, reduction="sum")
    torch.testing.assert_close(nll, expected, **TOL)
    for a, b in zip(h1 if cell == "lstm" else (h1,), h2 if cell == "lstm" else (h2,), strict=True):
        torch.testing.assert_close(a, b)


def test_fused_and_unfused_model_losses_train_the_same():
    """Same maths: one SGD step with the fused loss equals one with the plain decoder + cross-entropy."""
    torch.manual_seed(0)
    fused = RNNLM(50, cell="lstm", embedding_dim=8, hidden_dim=8, num_layers=2, fused_loss=True)
    plain = RNNLM(50, cell="lstm", embedding_dim=8, hidden_dim=8, num_layers=2, fused_loss=False)
    plain.load_state_dict(fused.state_dict())
    fused.eval()
    plain.eval()
    x = torch.randint(0, 50, (4, 6))
    y = torch.randint(0, 50, (4, 6))
    for m in (fused, plain):
        loss, _ = m.nll(x, y, reduction="mean")
        loss.backward()
    for (name, p), q in zip(fused.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **TOL, msg=name)
