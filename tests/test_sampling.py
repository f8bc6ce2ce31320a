"""Choosing the next token: greedy at temperature 0; top-k / top-p never leave the allowed set."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlm.sampling import filter_logits, next_token

# A hand-built distribution over 6 tokens, deliberately not in sorted order.
PROBS = torch.tensor([0.05, 0.30, 0.40, 0.02, 0.15, 0.08])
LOGITS = PROBS.log()


def _draws(logits: torch.Tensor, n: int = 2000, **kw) -> set[int]:
    gen = torch.Generator().manual_seed(0)
    batch = logits.expand(n, -1)  # n independent rows, one draw each
    return set(next_token(batch, generator=gen, **kw).tolist())


def test_temperature_zero_is_greedy() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0, 1.9], [5.0, 0.0, 0.0, 0.0], [-3.0, -2.0, -1.0, -4.0]])
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        assert next_token(logits, temperature=0.0, generator=gen).tolist() == [1, 0, 2]
    # Greedy ignores top-k / top-p: the argmax is always inside both sets.
    assert next_token(logits, 0.0, top_k=1, top_p=0.1).tolist() == [1, 0, 2]


def test_negative_temperature_is_an_error() -> None:
    with pytest.raises(ValueError, match="temperature"):
        next_token(LOGITS[None], temperature=-1.0)


def test_top_k_filter_keeps_exactly_the_k_largest() -> None:
    out = filter_logits(LOGITS[None], top_k=2)[0]
    kept = {i for i in range(6) if math.isfinite(out[i])}
    assert kept == {1, 2}
    torch.testing.assert_close(out[[1, 2]], LOGITS[[1, 2]])  # survivors unchanged
    # k >= V or k <= 0 leaves everything.
    assert torch.equal(filter_logits(LOGITS, top_k=6), LOGITS)
    assert torch.equal(filter_logits(LOGITS, top_k=0), LOGITS)


@pytest.mark.parametrize(
    ("top_p", "allowed"),
    [
        (0.35, {2}),  # 0.40 alone covers 0.35
        (0.60, {2, 1}),  # 0.40 + 0.30 = 0.70 >= 0.60
        (0.80, {2, 1, 4}),  # 0.85 >= 0.80
        (0.90, {2, 1, 4, 5}),  # 0.93 >= 0.90
    ],
)
def test_top_p_filter_keeps_the_smallest_nucleus(top_p: float, allowed: set[int]) -> None:
    out = filter_logits(LOGITS[None], top_p=top_p)[0]
    assert {i for i in range(6) if math.isfinite(out[i])} == allowed


def test_filters_work_per_row() -> None:
    logits = torch.stack([LOGITS, LOGITS.flip(0)])
    out = filter_logits(logits, top_k=1)
    assert [int(r.isfinite().nonzero()) for r in out] == [2, 3]
    out = filter_logits(logits, top_p=0.6)
    assert {int(i) for i in out[0].isfinite().nonzero()} == {1, 2}
    assert {int(i) for i in out[1].isfinite().nonzero()} == {3, 4}


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_top_k_sampling_never_leaves_the_allowed_set(temperature: float) -> None:
    seen = _draws(LOGITS[None], temperature=temperature, top_k=3)
    assert seen <= {1, 2, 4}
    assert seen == {1, 2, 4}  # and every allowed token does occur


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_top_p_sampling_never_leaves_the_allowed_set(temperature: float) -> None:
    # The nucleus is taken after temperature scaling, so compute the allowed set the same way.
    scaled = (LOGITS / temperature).softmax(-1)
    order = scaled.argsort(descending=True).tolist()
    allowed, mass = set(), 0.0
    for i in order:
        allowed.add(i)
        mass += float(scaled[i])
        if mass >= 0.75:
            break
    seen = _draws(LOGITS[None], temperature=temperature, top_p=0.75)
    assert seen <= allowed
    assert seen == allowed


def test_top_k_and_top_p_together_take_the_intersection() -> None:
    seen = _draws(LOGITS[None], top_k=3, top_p=0.5)
    # top-k keeps {2, 1, 4} (renormalised: 0.47, 0.35, 0.18); top-p 0.5 then keeps {2, 1}.
    assert seen == {1, 2}


def test_sampling_is_reproducible_with_a_seeded_generator() -> None:
    logits = LOGITS.expand(50, -1)
    a = next_token(logits, generator=torch.Generator().manual_seed(7))
    b = next_token(logits, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
