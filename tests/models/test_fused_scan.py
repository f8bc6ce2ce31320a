"""model.scan=fused (rnnlm/models/fused_scan.py + .cpp): the C++ gated scans compute what the cells'
PyTorch path computes, in float64 exactly, in float32 and under bf16 autocast to rounding; `auto` falls
back to the PyTorch path where the kernel cannot be built, and `fused` then refuses in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rnnlm.models import fused_scan
from rnnlm.models.cells.mingru import MinGRU, MinLSTM
from rnnlm.models.cells.qrnn import QRNN

CELLS = {
    "mingru": lambda d, scan: MinGRU(d, d, scan),
    "minlstm": lambda d, scan: MinLSTM(d, d, scan),
    "qrnn1": lambda d, scan: QRNN(d, d, 1, scan=scan),
    "qrnn2": lambda d, scan: QRNN(d, d, 2, scan=scan),
}
pytestmark = pytest.mark.skipif(
    fused_scan.library() is None, reason=f"no C++ compiler here: {fused_scan.build_error()}"
)


def _pair(name: str, d: int, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    fused = CELLS[name](d, "fused").to(dtype)
    plain = CELLS[name](d, "chunked").to(dtype)
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def _run(cell: torch.nn.Module, x: torch.Tensor, state: tuple | None) -> list[torch.Tensor]:
    """Output, state and the gradients of x, the state and the weights, for a loss on all of them."""
    x = x.clone().requires_grad_()
    state = None if state is None else tuple(s.clone().requires_grad_() for s in state)
    y, new = cell(x, state)
    (y.float().square().sum() + sum(s.float().sum() for s in new)).backward()
    grads = [x.grad] + [s.grad for s in state or ()] + [p.grad for p in cell.parameters()]
    return [y, *new, *grads]


@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_equals_the_pytorch_path_in_float64(name: str) -> None:
    fused, plain = _pair(name, 37, torch.float64)  # 37: a block of channels that is not full
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(300, 3, 37, generator=g, dtype=torch.float64)
    state = tuple(torch.randn(s.shape, generator=g).double() for s in plain.init_state(3, x))
    for got, want in zip(_run(fused, x, state), _run(plain, x, state), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_gradcheck(name: str) -> None:
    fused, _ = _pair(name, 5, torch.float64)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(s.shape, generator=g).double().requires_grad_() for s in fused.init_state(2, x)
    )

    def run(x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, new = fused(x, state)
        return (y, *new)

    assert torch.autograd.gradcheck(run, (x, *state))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_in_float32_and_under_bf16_autocast(name: str) -> None:
    fused, plain = _pair(name, 96, torch.float32)
    x = torch.randn(200, 4, 96, generator=torch.Generator().manual_seed(3))
    for got, want in zip(_run(fused, x, None), _run(plain, x, None), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = _run(fused, x, None), _run(plain, x, None)
    assert got[0].dtype == torch.bfloat16 and got[1].dtype == torch.float32  # output, state
    for a, b in zip(got, want, strict=True):  # bf16 rounding of what the backward keeps
        assert (a.float() - b.float()).norm() <= 2e-2 * b.float().norm() + 1e-3


def test_extreme_pre_activations_stay_finite() -> None:
    for name in CELLS:
        fused, _ = _pair(name, 16, torch.float32)
        with torch.no_grad():
            for p in fused.parameters():
                p.mul_(40)  # pre-activations of several hundred
        out = _run(fused, 3 * torch.randn(4096, 2, 16), None)
        assert all(torch.isfinite(t).all() for t in out), name


def test_auto_falls_back_and_fused_refuses_in_one_line_without_a_compiler(tmp_path) -> None:
    code = (
        "import torch\n"
        "from rnnlm.models.cells.mingru import MinGRU\n"
        "from rnnlm.models import fused_scan\n"
        "x = torch.randn(5, 2, 8)\n"
        "y, _ = MinGRU(8, 8, 'auto')(x)\n"
        "assert fused_scan.library() is None and y.shape == (5, 2, 8)\n"
        "MinGRU(8, 8, 'fused')(x)\n"
    )
    env = {"CXX": str(tmp_path / "no-such-compiler"), "RNNLM_KERNEL_CACHE": str(tmp_path / "k")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**__import__("os").environ, **env},
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "model.scan=fused could not be built" in last and "model.scan=auto or chunked" in last


def test_the_kernel_is_built_once_and_then_loaded_from_the_cache(tmp_path) -> None:
    code = "from rnnlm.models import fused_scan; assert fused_scan.library() is not None"
    env = {**__import__("os").environ, "RNNLM_KERNEL_CACHE": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert len(list(tmp_path.glob("fused_scan-*.so"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # the build folder is gone


def test_fused_for_a_cell_without_a_kernel_is_refused_in_one_line() -> None:
    from rnnlm.models import RNNLM

    with pytest.raises(
        ValueError,
        match=r"model.scan=fused has kernels for mingru, minlstm, qrnn, not model.cell=hawk",
    ):
        RNNLM(30, cell="hawk", embedding_dim=8, hidden_dim=8, scan="fused")
