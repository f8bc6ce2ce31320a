"""AWD-LSTM's regularisers: off gives exactly the plain model, on changes the training output only."""

from __future__ import annotations

import pytest
import torch

from rnnlm.models import RNNLM, detach_hidden
from rnnlm.models.regularization import embedding_dropout, locked_dropout

V = 23
CELLS = ["lstm", "gru"]
# Each regulariser, switched on.
REGULARISERS = {
    "dropout_input": 0.4,
    "dropout_hidden": 0.4,
    "dropout_embedding": 0.3,
    "weight_drop": 0.5,
}


def _model(cell: str, **kw) -> RNNLM:
    torch.manual_seed(0)
    base = {"embedding_dim": 12, "hidden_dim": 12, "num_layers": 3, "dropout": 0.0}
    return RNNLM(V, cell=cell, **{**base, **kw})


def _x(b: int = 3, t: int = 9) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(1))


# ==================================================================================================
# Regularisers: off = the plain model, exactly; on = training-mode output only; evaluation deterministic
# ==================================================================================================
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("key", [*REGULARISERS, "ar_alpha", "tar_beta"])
def test_regulariser_off_gives_exactly_the_plain_model(cell: str, key: str) -> None:
    """The switch at its "off" value, on the layer-by-layer path where it has one, equals nn.LSTM/GRU."""
    off = {"dropout_input": 0.0, "dropout_hidden": 0.0}.get(key, 0.0)
    plain, regular = _model(cell), _model(cell, **{key: off})
    if key in ("dropout_input", "dropout_hidden"):
        assert regular.layerwise  # the locked path really runs, with zero rates
    regular.load_state_dict(plain.state_dict())
    x = _x()
    for mode in ("train", "eval"):
        getattr(plain, mode)(), getattr(regular, mode)()
        torch.manual_seed(5)
        a, ha = plain(x)
        torch.manual_seed(5)
        b, hb = regular(x)
        assert torch.equal(a, b), (mode, (a - b).abs().max())
        for u, v in zip(detach_hidden(ha), detach_hidden(hb), strict=True):
            assert torch.equal(u, v)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("key", list(REGULARISERS))
def test_regulariser_on_changes_training_output_only(cell: str, key: str) -> None:
    plain, regular = _model(cell), _model(cell, **{key: REGULARISERS[key]})
    assert set(regular.state_dict()) == set(plain.state_dict())  # same parameters, same names
    regular.load_state_dict(plain.state_dict())
    x = _x()
    plain.train(), regular.train()
    torch.manual_seed(5)
    a, _ = plain(x)
    torch.manual_seed(5)
    b, _ = regular(x)
    assert not torch.allclose(a, b), f"{key} does nothing in training mode"
    plain.eval(), regular.eval()
    e1, _ = regular(x)
    e2, _ = regular(x)
    assert torch.equal(e1, e2)  # evaluation is deterministic
    assert torch.equal(e1, plain(x)[0])  # and identical to the plain model with the same weights


@pytest.mark.parametrize("key", ["ar_alpha", "tar_beta"])
def test_ar_tar_add_a_training_penalty_and_leave_the_output_alone(key: str) -> None:
    plain, regular = _model("lstm"), _model("lstm", **{key: 2.0})
    x = _x()
    plain.train(), regular.train()
    torch.manual_seed(5)
    a, _ = plain(x)
    torch.manual_seed(5)
    b, _ = regular(x)
    assert torch.equal(a, b)
    penalty = regular.pop_penalty()
    assert penalty is not None and penalty.requires_grad and penalty.item() > 0
    assert regular.pop_penalty() is None  # consumed
    assert plain.pop_penalty() is None
    regular.eval()
    regular(x)
    assert regular.pop_penalty() is None  # nothing in evaluation


def test_locked_dropout_uses_one_mask_per_sequence() -> None:
    torch.manual_seed(0)
    out = locked_dropout(torch.ones(4, 7, 10), 0.5, training=True)
    assert torch.equal(out, out[:, :1].expand_as(out))  # same units dropped at every step
    assert (out == 0).any() and torch.allclose(out[out != 0], torch.tensor(2.0))
    assert torch.equal(
        locked_dropout(torch.ones(4, 7, 10), 0.5, training=False), torch.ones(4, 7, 10)
    )


def test_embedding_dropout_drops_whole_words() -> None:
    torch.manual_seed(0)
    x = torch.tensor([[1, 2, 1, 3, 2, 1], [3, 3, 1, 2, 4, 4]])
    emb = torch.ones(2, 6, 5)
    for _ in range(5):
        out = embedding_dropout(emb, x, 6, 0.5, training=True)
        for word in x.unique():
            rows = out[x == word]
            assert torch.equal(rows, rows[:1].expand_as(rows))  # every occurrence alike
        assert set(out.unique().tolist()) <= {0.0, 2.0}


@pytest.mark.parametrize("cell", CELLS)
def test_weight_drop_trains_lstm_and_gru_on_cpu(cell: str) -> None:
    model = _model(cell, weight_drop=0.5, dropout_hidden=0.2, dropout_input=0.2, dropout=0.2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = _x(4, 12), _x(4, 12).roll(1, 1)
    model.train()
    losses, hidden = [], None
    for _ in range(30):
        logits, hidden = model(x, hidden)
        hidden = detach_hidden(hidden)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        assert model.rnn.weight_hh_l0.grad.abs().sum() > 0  # the gradient reaches the raw matrix
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("cell", CELLS)
def test_layers_of_different_sizes_carry_state_like_one_window(cell: str) -> None:
    model = RNNLM(
        V,
        cell=cell,
        embedding_dim=8,
        hidden_dim=12,
        last_hidden_dim=8,
        num_layers=3,
        tie_weights=True,
        weight_drop=0.5,
        dropout_hidden=0.3,
    ).eval()
    x = _x(2, 10)
    with torch.no_grad():
        full, _ = model(x)
        first, h = model(x[:, :4])
        second, _ = model(x[:, 4:], detach_hidden(h))
        assert [t.shape for t in model.init_hidden(2)] == [t.shape for t in h]
    torch.testing.assert_close(torch.cat([first, second], 1), full)
    assert model.decoder.weight is model.embedding.weight
