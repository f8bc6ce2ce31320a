"""The continuous cache (adaptation/cache.py): the paper's formula, window by window, and src/eval.py's options."""

from __future__ import annotations

import pytest
import torch

from rnnlm.adaptation.cache import ContinuousCache, mix
from rnnlm.adaptation.tuning import (
    evaluate_stream_cached,
    evaluate_stream_dynamic,
    tune_cache,
    tune_dynamic,
)
from rnnlm.models import RNNLM


def brute_force_probs(h: torch.Tensor, y: torch.Tensor, window: int, theta: float) -> torch.Tensor:
    """p_cache(y_t) straight from the definition, one column and one position at a time. h (B, N, H)."""
    b, n, _ = h.shape
    p = torch.zeros(b, n, dtype=torch.float64)
    for col in range(b):
        for t in range(n):
            past = list(range(max(0, t - window), t))
            if not past:
                continue
            scores = torch.tensor(
                [theta * float(h[col, t] @ h[col, i]) for i in past], dtype=torch.float64
            )
            w = torch.softmax(scores, 0)
            p[col, t] = sum(float(w[k]) for k, i in enumerate(past) if y[col, i] == y[col, t])
    return p


@pytest.mark.parametrize("window", [1, 3, 7, 50])
def test_cache_matches_the_definition_across_windows(window: int) -> None:
    torch.manual_seed(0)
    h, y = torch.randn(2, 23, 5), torch.randint(0, 4, (2, 23))
    cache = ContinuousCache(window, theta=0.7, lam=0.3)
    got = torch.cat([cache.probs(h[:, s : s + 6], y[:, s : s + 6])[0] for s in range(0, 23, 6)], 1)
    assert torch.allclose(got.double(), brute_force_probs(h, y, window, 0.7), atol=1e-6)
    assert cache.keys.shape[1] == min(window, 23)


def test_theta_zero_is_word_counts_of_the_window() -> None:
    y = torch.tensor([[1, 2, 1, 1, 3, 1]])
    p, has = ContinuousCache(4, theta=0.0, lam=0.5).probs(torch.randn(1, 6, 3), y)
    assert has.tolist() == [[False, True, True, True, True, True]]
    # position 5 (token 1) sees positions 1..4 = [2, 1, 1, 3]: two of four
    assert p[0].tolist() == pytest.approx([0.0, 0.0, 0.5, 2 / 3, 0.0, 0.5])


def test_mixture_is_a_probability_and_weight_zero_is_the_model() -> None:
    logp = torch.log(torch.tensor([[0.2, 0.5, 1e-30]]))
    p = torch.tensor([[0.0, 1.0, 0.5]])
    has = torch.tensor([[True, True, False]])
    assert torch.equal(mix(logp, p, has, 0.0), logp)
    mixed = mix(logp, p, has, 0.25).exp()
    assert mixed[0].tolist() == pytest.approx([0.15, 0.625, 1e-30])  # no memory: the model alone


def test_bad_cache_settings_are_rejected() -> None:
    for kwargs, key in (
        ({"window": 0}, "cache.window"),
        ({"lam": 1.5}, "cache.weight"),
        ({"theta": -1}, "cache.theta"),
    ):
        args = {"window": 10, "theta": 0.3, "lam": 0.1, **kwargs}
        with pytest.raises(ValueError, match=key):
            ContinuousCache(**args)


def test_cache_finds_the_words_that_followed_the_same_state() -> None:
    """States that identify the current word (one-hot): after the first repeat of a passage, a sharp
    cache puts almost all its mass on the word that followed that state last time."""
    passage = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    x = passage.repeat(3)  # (90,)
    h = torch.nn.functional.one_hot(x[:-1], 30).float().unsqueeze(0)  # (1, 89, 30)
    y = x[1:].unsqueeze(0)
    cache = ContinuousCache(window=200, theta=20.0, lam=0.5)
    p = torch.cat([cache.probs(h[:, s : s + 10], y[:, s : s + 10])[0] for s in range(0, 89, 10)], 1)
    assert p[0, :30].max() < 1e-6  # first pass: the words never followed these states before
    assert p[0, 30:].min() > 0.999


def test_cache_scores_a_model_stream_and_tunes() -> None:
    from rnnlm.inference.lm import LanguageModel

    torch.manual_seed(0)
    model = RNNLM(50, cell="lstm", embedding_dim=16, hidden_dim=32, num_layers=1).eval()
    lm = LanguageModel(model, tokenizer=None)  # type: ignore[arg-type]
    ids = torch.randint(0, 50, (40,)).repeat(10)
    plain, count = lm.evaluate_stream(ids, batch_size=2, bptt=8)
    off, static, count2 = evaluate_stream_cached(lm, ids, 2, 8, ContinuousCache(100, 0.0, 0.0))
    assert count2 == count
    assert off == pytest.approx(plain, rel=1e-5) and static == pytest.approx(plain, rel=1e-5)
    on, _, _ = evaluate_stream_cached(lm, ids, 2, 8, ContinuousCache(100, 1.0, 0.5))
    assert on != pytest.approx(plain, rel=1e-3)
    theta, lam, losses = tune_cache(lm, ids, 2, 8, 100, [0.0, 1.0], [0.0, 0.5, 0.9])
    assert len(losses) == 6 and losses[(theta, lam)] == min(losses.values())
    assert losses[(1.0, 0.5)] == pytest.approx(on / count, rel=1e-5)
    assert losses[(0.0, 0.0)] == pytest.approx(plain / count, rel=1e-5)


def test_dynamic_evaluation_scores_before_it_learns_and_restores_the_weights() -> None:
    from rnnlm.adaptation.dynamic import dynamic_nll
    from rnnlm.inference.lm import LanguageModel

    torch.manual_seed(0)
    model = RNNLM(30, cell="gru", embedding_dim=8, hidden_dim=16, num_layers=2, dropout=0.3)
    lm = LanguageModel(model, tokenizer=None)  # type: ignore[arg-type]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 30, (12,)).repeat(20)  # a passage that repeats: worth learning
    plain, count = lm.evaluate_stream(ids, batch_size=2, bptt=6)
    zero, count0 = evaluate_stream_dynamic(lm, ids, 2, 6, lr=0.0)
    assert count0 == count and zero == pytest.approx(plain, rel=1e-6)  # lr 0: the static model
    adapted, _ = evaluate_stream_dynamic(lm, ids, 2, 6, lr=1.0, decay=0.01)
    assert adapted < 0.95 * plain
    assert model.training  # mode restored (it was built in train mode)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the first window is scored by the trained weights: same loss as the static model there
    x, y = ids[:12].view(2, 6), ids[1:13].view(2, 6)
    first, _ = dynamic_nll(model, [(x, y)], lr=10.0)
    model.eval()
    assert first == pytest.approx(float(model.nll(x, y, None, "sum")[0].detach()), rel=1e-6)
    with pytest.raises(ValueError, match="dynamic.decay"):
        dynamic_nll(model, [], lr=0.1, decay=2.0)
    best_lr, best_decay, losses = tune_dynamic(lm, ids, 2, 6, [0.0, 1.0], [0.0])
    assert best_lr == 1.0 and losses[(0.0, 0.0)] == pytest.approx(plain / count, rel=1e-6)


def test_eval_mode_restores_the_mode_even_when_the_block_raises() -> None:
    from rnnlm.models.modes import eval_mode

    model = torch.nn.Dropout(0.5).train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        assert not model.training
        raise RuntimeError("boom")
    assert model.training
    with eval_mode(model.eval()):
        pass
    assert not model.training
