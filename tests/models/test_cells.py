"""The cells that train in parallel over time (rnnlm/models/cells/) and their shared scan
(rnnlm/models/scan.py): every form of each computes the same function, in float64 to 1e-5 and better."""

from __future__ import annotations

import pytest
import torch

from rnnlm.models import RNNLM, fused_scan
from rnnlm.models.cells.block import ResidualBlock
from rnnlm.models.cells.hawk import HawkBlock
from rnnlm.models.cells.mingru import MinGRU, MinLSTM
from rnnlm.models.cells.mlstm import MLSTM, chunkwise, recurrent
from rnnlm.models.cells.qrnn import QRNN
from rnnlm.models.scan import BACKENDS, linear_scan, scan_sequential

D, B = 8, 2
SCANNED = ["mingru", "minlstm", "qrnn1", "qrnn2", "hawk", "mingru_block", "minlstm_block"]


def make(name: str, scan: str = "chunked") -> torch.nn.Module:
    if scan == "fused" and fused_scan.library() is None:
        pytest.skip(f"no C++ compiler here: {fused_scan.build_error()}")
    if scan == "fused" and name.startswith("hawk"):
        scan = "auto"  # Hawk has no fused kernel (refused in one line: test_fused_scan.py)
    cells = {
        "mingru": lambda: MinGRU(D, D, scan),
        "minlstm": lambda: MinLSTM(D, D, scan),
        "qrnn1": lambda: QRNN(D, D, 1, scan=scan),
        "qrnn2": lambda: QRNN(D, D, 2, scan=scan),
        "hawk": lambda: HawkBlock(D, 2.0, 4, scan),
        "mingru_block": lambda: ResidualBlock(MinGRU(D, D, scan), 4, 2.0),
        "minlstm_block": lambda: ResidualBlock(MinLSTM(D, D, scan), 4, 2.0),
        "mlstm": lambda: MLSTM(D, D, heads=2, chunk=64),
        "mlstm_block": lambda: ResidualBlock(MLSTM(D, D, heads=2, chunk=48), 4, 2.0),
    }
    torch.manual_seed(0)
    return cells[name]().double().eval()


CASES = [(c, s) for c in SCANNED for s in BACKENDS] + [("mlstm", "-"), ("mlstm_block", "-")]


def _steps(cell: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    state, out = None, []
    for t in range(x.size(0)):
        y, state = cell.step(x[t], state)
        out.append(y)
    return torch.stack(out), state


# -- the scan --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_scan_backends_agree_with_the_sequential_reference(backend: str) -> None:
    g = torch.Generator().manual_seed(0)
    for t in (1, 2, 7, 45, 2048):
        a = torch.rand(t, B, D, generator=g, dtype=torch.float64)
        b = torch.randn(t, B, D, generator=g, dtype=torch.float64)
        h0 = torch.randn(B, D, generator=g, dtype=torch.float64)
        want = scan_sequential(a, b, h0)
        torch.testing.assert_close(linear_scan(a, b, h0, backend), want, rtol=0, atol=1e-10)
    assert linear_scan(a[:0], b[:0], h0, backend).shape == (0, B, D)


@pytest.mark.parametrize("backend", ["chunked", "log"])
def test_scan_gradients(backend: str) -> None:
    g = torch.Generator().manual_seed(1)
    for t in (9, 7, 50, 23, 1):  # chunks dividing T, a prime T (one step at a time), a padded
        # last chunk (23: chunks of 4), one token
        a = (torch.rand(t, 2, 3, generator=g, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
        b = torch.randn(t, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
        h0 = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b, h: linear_scan(a, b, h, backend), (a, b, h0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_scan_stays_finite_with_gates_near_0_and_1(backend: str) -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.sigmoid(30 * torch.randn(4096, B, D, generator=g)).requires_grad_()
    b = torch.randn(4096, B, D, generator=g, requires_grad=True)
    h = linear_scan(a, b, None, backend)
    h.sum().backward()
    assert torch.isfinite(h).all() and torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_the_mlstm_chunkwise_form_is_its_recurrence() -> None:
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(B, 2, 300, 4, generator=g, dtype=torch.float64) for _ in range(3))
    i = 3 * torch.randn(B, 2, 300, generator=g, dtype=torch.float64)
    log_f = torch.nn.functional.logsigmoid(3 * torch.randn(B, 2, 300, generator=g).double())
    C, n, m = (
        torch.randn(B, 2, 4, 4).double(),
        torch.randn(B, 2, 4).double(),
        torch.zeros(B, 2).double(),
    )
    want = recurrent(q, k, v, i, log_f, C, n, m)
    for chunk in (1, 7, 64, 512):
        got = chunkwise(q, k, v, i, log_f, C, n, m, chunk=chunk)
        for x, y in zip(got, want, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)


# -- every cell: parallel form = step form = windows with the state carried -----------------------
@pytest.mark.parametrize(("name", "scan"), CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_parallel_form_equals_step_form_and_carried_windows(name: str, scan: str) -> None:
    cell = make(name, scan if scan != "-" else "chunked")
    x = torch.randn(2048, B, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        y, state = cell(x)
        ys, step_state = _steps(cell, x) if scan in ("chunked", "fused", "-") else (None, None)
        windows, carried = [], None
        for w in x.split(512):
            yw, carried = cell(w, carried)
            windows.append(yw)
    torch.testing.assert_close(torch.cat(windows), y, rtol=0, atol=1e-5)
    for a, b in zip(carried, state, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    if ys is not None:  # the step form does not depend on the scan backend: checked once
        torch.testing.assert_close(ys, y, rtol=0, atol=1e-5)
        for a, b in zip(step_state, state, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", [*SCANNED, "mlstm", "mlstm_block"])
def test_cell_gradients_in_float64(name: str) -> None:
    cell = make(name)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 1, D, generator=g, dtype=torch.float64, requires_grad=True)
    state = tuple(
        (0.5 * torch.rand(s.shape, generator=g, dtype=torch.float64)).requires_grad_()
        for s in cell.init_state(1, x)
    )

    def run(x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, new = cell(x, state)
        return (y, *new)

    assert torch.autograd.gradcheck(run, (x, *state))


@pytest.mark.parametrize("name", [*SCANNED, "mlstm", "mlstm_block"])
def test_no_nan_at_4096_tokens_with_extreme_pre_activations(name: str) -> None:
    cell = make(name).float().train()
    with torch.no_grad():  # gate pre-activations of +-30 and more
        for p in cell.parameters():
            p.mul_(10)
    x = 3 * torch.randn(4096, B, D, generator=torch.Generator().manual_seed(6))
    x.requires_grad_()
    y, state = cell(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(s).all() for s in state)


# -- in the language model -------------------------------------------------------------------------
MODELS = {
    "mingru": {"block": True, "conv_kernel": 4, "mlp_mult": 2.0},
    "minlstm": {"block": False},
    "qrnn": {"window": 2},
    "hawk": {"conv_kernel": 4, "mlp_mult": 2.0},
    "mlstm": {"heads": 2, "chunk_size": 8, "block": True, "conv_kernel": 4, "mlp_mult": 2.0},
}


@pytest.mark.parametrize("cell", sorted(MODELS))
def test_generation_continues_the_state_of_the_parallel_form(cell: str) -> None:
    """The prompt read in one window (as LanguageModel.generate reads it), then one token: the same
    next-token distribution as the whole text read token by token."""
    torch.manual_seed(0)
    model = RNNLM(30, cell=cell, embedding_dim=8, hidden_dim=8, num_layers=2, **MODELS[cell])
    model = model.double().eval()
    text = torch.randint(0, 30, (1, 40))
    with torch.no_grad():
        _, hidden = model(text[:, :-1])
        logits, _ = model(text[:, -1:], hidden)
        state = None
        for t in range(text.size(1)):
            stepped, state = model(text[:, t : t + 1], state)
    p, q = torch.softmax(logits[0, -1], -1), torch.softmax(stepped[0, -1], -1)
    torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_keys_that_mean_nothing_for_a_cell_are_refused() -> None:
    with pytest.raises(ValueError, match=r"model.heads=4 means nothing for model.cell=gru"):
        RNNLM(30, cell="gru", heads=4)
    with pytest.raises(ValueError, match="no hidden-to-hidden matrix to drop"):
        RNNLM(30, cell="mingru", weight_drop=0.2)
    with pytest.raises(ValueError, match=r"model.heads=3 must divide model.hidden_dim=8"):
        RNNLM(30, cell="mlstm", embedding_dim=8, hidden_dim=8, heads=3)
    RNNLM(30, cell="qrnn", embedding_dim=8, hidden_dim=8, weight_drop=0.2)  # QRNN drops its W
