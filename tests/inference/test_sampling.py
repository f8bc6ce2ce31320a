"""Choosing the next token: greedy at temperature 0; top-k / top-p never leave the allowed set."""

from __future__ import annotations

import math
import re

import pytest
import torch

from rnnlm.inference.sampling import filter_logits, next_token

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


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"temperature": -1.0}, "temperature=-1.0"),
        ({"temperature": float("nan")}, "temperature=nan"),
        ({"top_k": 0}, "top_k=0"),
        ({"top_k": -3}, "top_k=-3"),
        ({"top_p": 0.0}, "top_p=0.0"),
        ({"top_p": 1.5}, "top_p=1.5"),
    ],
)
def test_impossible_sampling_settings_are_named(settings: dict, named: str) -> None:
    """A setting that would be silently ignored (top_k=0, top_p=0) or fail inside torch (a NaN
    temperature) is an error naming it."""
    with pytest.raises(ValueError, match=re.escape(named)):
        next_token(LOGITS[None], **{"temperature": 1.0, **settings})


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


class _Scripted(torch.nn.Module):
    """A 'model' whose next token is always the next byte of a script (greedy decoding picks it)."""

    def __init__(self, script: bytes) -> None:
        super().__init__()
        self.script, self.calls = script, 0
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, x: torch.Tensor, hidden: object = None) -> tuple[torch.Tensor, object]:
        logits = torch.full((x.size(0), x.size(1), 256), -1e9)
        logits[:, -1, self.script[min(self.calls, len(self.script) - 1)]] = 0.0
        self.calls += 1
        return logits, hidden


def test_streamed_text_holds_back_incomplete_multibyte_characters() -> None:
    """Byte-level sampling streams UTF-8 one byte at a time: a character is printed once all of its
    bytes are there, never as U+FFFD, and the streamed pieces add up to the returned text."""
    from rnnlm.data.tokenizers import ByteTokenizer
    from rnnlm.inference.lm import LanguageModel

    script = "é€ ok".encode()
    lm = LanguageModel(_Scripted(script), ByteTokenizer())
    pieces: list[str] = []
    text = lm.generate("a", max_new_tokens=len(script), temperature=0, on_text=pieces.append)
    assert text == "aé€ ok"
    assert "".join(pieces) == "é€ ok" and not any("\ufffd" in p for p in pieces)
    assert pieces[:2] == ["é", "€"]
