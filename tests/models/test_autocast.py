"""Under bf16 autocast the fast output layers (fused loss, adaptive softmax tied or not), sparse
embeddings with foreach SGD and the classic cells give float32's values and gradients within bf16's
tolerance: bf16 matrix multiplies, float32 log-sum-exp, loss and accumulation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnlm.models import RNNLM
from rnnlm.models.classic import BF16_MIN_WIDTH
from rnnlm.models.loss import linear_cross_entropy

DEVICES = ["cpu"] + (
    ["cuda"] if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else []
)
# bf16 keeps 8 significant bits: a logit of 10 is rounded by up to 0.02.
BF16 = {"rtol": 3e-2, "atol": 3e-2}


def _close(actual, expected, what=""):
    """Within bf16's tolerance relative to the tensor's own scale (gradients span many magnitudes)."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(
        actual.float(), expected.float(), rtol=BF16["rtol"], atol=BF16["atol"] * scale, msg=what
    )


def _inputs(n, h, v, device, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, h, generator=g) * scale / h**0.5).to(device).requires_grad_()
    w = torch.randn(v, h, generator=g).to(device).requires_grad_()
    b = torch.randn(v, generator=g).to(device).requires_grad_()
    y = torch.randint(0, v, (n,), generator=g).to(device)
    return x, w, b, y


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_loss_under_autocast_equals_float32_cross_entropy(device, reduction, bias):
    # 300 tokens, 1,000 words, 64 rows a chunk: five chunks, the last one short.
    x, w, b, y = _inputs(300, 32, 1000, device, scale=3.0)
    b = b if bias else None
    params = [t for t in (x, w, b) if t is not None]
    with torch.autocast(device, dtype=torch.bfloat16):
        fused = linear_cross_entropy(x, w, b, y, reduction, chunk_elements=64 * 1000)
    assert fused.dtype == torch.float32  # the loss leaves autocast in float32
    grads = torch.autograd.grad(fused, params)
    ref = F.cross_entropy(F.linear(x, w, b), y, reduction=reduction)
    ref_grads = torch.autograd.grad(ref, params)
    _close(fused, ref, "loss")
    for name, a, e in zip("xwb", grads, ref_grads, strict=False):
        assert a.dtype == e.dtype
        _close(a, e, name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", [30.0, 1e3])
def test_fused_loss_under_autocast_with_extreme_logits(device, scale):
    """Logits in the hundreds and thousands, targets at the arg max and arg min of their row: finite,
    and within the bound of bf16-rounded logits (each token's log-sum-exp moves by at most its largest
    logit's rounding, 2^-8 of it; the target's logit is computed in float32)."""
    x, w, b, y = _inputs(97, 8, 50, device, scale=scale * 8**0.5, seed=1)
    with torch.no_grad():
        logits = F.linear(x, w, b)
        y[::3] = logits[::3].argmax(1)
        y[1::3] = logits[1::3].argmin(1)
    with torch.autocast(device, dtype=torch.bfloat16):
        fused = linear_cross_entropy(x, w, b, y, "sum", chunk_elements=32 * 50)
    grads = torch.autograd.grad(fused, (x, w, b))
    ref = F.cross_entropy(logits, y, reduction="sum")
    bound = (logits.abs().amax(1) * 2**-8).sum()
    assert torch.isfinite(fused) and all(torch.isfinite(g).all() for g in grads)
    assert abs(fused - ref) <= bound, (fused, ref, bound)


def test_fused_loss_log_sum_exp_is_float32():
    """The loss of bf16 logits summed in float32: closer to float32's than autocast's own
    cross-entropy of the full logits, which rounds every log-probability to bf16."""
    x, w, b, y = _inputs(2000, 64, 3000, "cpu", scale=4.0, seed=6)
    with torch.no_grad():
        ref = F.cross_entropy(F.linear(x, w, b), y, reduction="sum")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fused = linear_cross_entropy(x, w, b, y, "sum")
            naive = F.cross_entropy(F.linear(x, w, b), y, reduction="sum")
    assert abs(fused - ref) / ref < 1e-3
    assert abs(fused - ref) < abs(naive.float() - ref)


def _train_step(model, x, y, autocast, device="cpu"):
    model.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        loss, hidden = model.nll(x, y, reduction="mean")
    loss.backward()
    return loss, hidden


@pytest.mark.parametrize(
    "options",
    [
        {"softmax": "adaptive", "tie_weights": True, "adaptive_cutoffs": [20, 60]},
        {"softmax": "adaptive", "tie_weights": False, "adaptive_cutoffs": [20, 60]},
        {"softmax": "full", "tie_weights": True},
    ],
    ids=["adaptive-tied", "adaptive", "full-tied"],
)
def test_output_layers_under_autocast_train_like_float32(options):
    torch.manual_seed(0)
    model = RNNLM(120, cell="lstm", embedding_dim=160, hidden_dim=160, num_layers=1, **options)
    x = torch.randint(0, 120, (4, 30))
    y = torch.randint(0, 120, (4, 30))
    loss32, _ = _train_step(model, x, y, autocast=False)
    grads32 = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    loss16, _ = _train_step(model, x, y, autocast=True)
    assert loss16.dtype == torch.float32
    _close(loss16, loss32, "loss")
    for name, p in model.named_parameters():
        if name in grads32:
            _close(p.grad, grads32[name], name)


def test_sparse_embedding_with_foreach_sgd_under_autocast():
    """One SGD step (foreach update of the dense weights, the sparse embedding in its own group) under
    autocast moves the weights as float32's step does, within bf16's tolerance."""
    torch.manual_seed(0)
    models = [
        RNNLM(
            80, cell="lstm", embedding_dim=160, hidden_dim=160, num_layers=1, sparse_embedding=True
        )
        for _ in range(2)
    ]
    models[1].load_state_dict(models[0].state_dict())
    x = torch.randint(0, 80, (4, 20))
    y = torch.randint(0, 80, (4, 20))
    for model, autocast in zip(models, (False, True), strict=True):
        emb = model.embedding.weight
        dense = [p for p in model.parameters() if p is not emb]
        opt = torch.optim.SGD([{"params": dense}, {"params": [emb]}], lr=1.0, foreach=True)
        _train_step(model, x, y, autocast)
        assert emb.grad.is_sparse and emb.grad.dtype == torch.float32
        opt.step()
    for (name, a), b in zip(models[1].named_parameters(), models[0].parameters(), strict=True):
        _close(a.detach(), b.detach(), name)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_classic_cells_under_autocast_hand_back_a_float32_state(cell):
    """Wide or narrow, a window under autocast leaves a float32 state that the next window, evaluation
    and generation (float32) take; a layer narrower than BF16_MIN_WIDTH runs its recurrence exactly
    as in float32."""
    torch.manual_seed(0)
    for width in (BF16_MIN_WIDTH[cell] // 2, BF16_MIN_WIDTH[cell]):
        model = RNNLM(50, cell=cell, embedding_dim=width, hidden_dim=width, num_layers=2).eval()
        x = torch.randint(0, 50, (3, 12))
        y = torch.randint(0, 50, (3, 12))
        with torch.no_grad():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                mixed, state = model.nll(x, y)
                mixed2, _ = model.nll(x, y, state)  # the carried state, under autocast again
            for s in state if isinstance(state, tuple) else (state,):
                assert s.dtype == torch.float32
            plain, plain_state = model.nll(x, y)
            plain2, _ = model.nll(x, y, state)  # a state made under autocast, read in float32
        if width < BF16_MIN_WIDTH[cell]:  # the recurrence itself ran in float32
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                features, _ = model.features(x)
            assert features.dtype == torch.float32
            torch.testing.assert_close(features, model.features(x)[0])  # float32 rounding only
        _close(mixed / x.numel(), plain / x.numel(), "loss")
        _close(mixed2 / x.numel(), plain2 / x.numel(), "next window's loss")
