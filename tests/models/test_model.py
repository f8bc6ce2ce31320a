"""RNNLM: carried hidden state, shapes of every cell, tied weights, argument checks."""

from __future__ import annotations

import pytest
import torch

from rnnlm.models import CELLS, RNNLM, detach_hidden, num_parameters

V, E, H = 13, 8, 12


def _model(cell: str, **kw) -> RNNLM:
    torch.manual_seed(0)
    kw = {"embedding_dim": E, "hidden_dim": H, "num_layers": 2, "dropout": 0.0, **kw}
    return RNNLM(V, cell=cell, **kw).eval()


def _as_tuple(hidden) -> tuple[torch.Tensor, ...]:
    return hidden if isinstance(hidden, tuple) else (hidden,)


def test_cells_are_the_four_recurrent_kinds() -> None:
    assert set(CELLS) == {"rnn", "rnn_relu", "lstm", "gru"}


@pytest.mark.parametrize("cell", ["rnn", "rnn_relu", "lstm", "gru"])
def test_carrying_hidden_over_two_windows_equals_one_long_window(cell: str) -> None:
    model = _model(cell)
    torch.manual_seed(1)
    x = torch.randint(0, V, (3, 10))  # B=3, 2 windows of T=5
    with torch.no_grad():
        full, h_full = model(x)
        first, h1 = model(x[:, :5])
        second, h2 = model(x[:, 5:], detach_hidden(h1))
        fresh, _ = model(x[:, 5:])  # the second window without the carried state
    torch.testing.assert_close(torch.cat([first, second], dim=1), full, rtol=1e-5, atol=1e-5)
    for a, b in zip(_as_tuple(h2), _as_tuple(h_full), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # The state matters: without it the second window's outputs differ.
    assert not torch.allclose(fresh, full[:, 5:], atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "rnn_relu", "lstm", "gru"])
def test_zero_hidden_equals_no_hidden(cell: str) -> None:
    model = _model(cell)
    x = torch.randint(0, V, (2, 4))
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(x, model.init_hidden(2))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cell", ["rnn", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_output_and_hidden_shapes(cell: str, num_layers: int) -> None:
    model = _model(cell, num_layers=num_layers)
    B, T = 4, 7
    logits, hidden = model(torch.randint(0, V, (B, T)))
    assert logits.shape == (B, T, V)
    if cell == "lstm":
        assert isinstance(hidden, tuple) and len(hidden) == 2
    else:
        assert isinstance(hidden, torch.Tensor)
    for h in _as_tuple(hidden):
        assert h.shape == (num_layers, B, H)
    init = model.init_hidden(B)
    assert [h.shape for h in _as_tuple(init)] == [h.shape for h in _as_tuple(hidden)]
    assert all(float(h.abs().sum()) == 0.0 for h in _as_tuple(init))
    feats, _ = model.features(torch.randint(0, V, (B, T)))
    assert feats.shape == (B, T, H)


@pytest.mark.parametrize("cell", ["rnn", "rnn_relu", "lstm", "gru"])
def test_cell_type_and_nonlinearity(cell: str) -> None:
    model = _model(cell)
    expected = {
        "rnn": torch.nn.RNN,
        "rnn_relu": torch.nn.RNN,
        "lstm": torch.nn.LSTM,
        "gru": torch.nn.GRU,
    }
    assert type(model.rnn) is expected[cell]
    if cell.startswith("rnn"):
        assert model.rnn.nonlinearity == ("relu" if cell == "rnn_relu" else "tanh")


def test_detach_hidden_keeps_values_and_cuts_the_graph() -> None:
    h = torch.ones(1, 2, 3, requires_grad=True) * 2
    c = torch.ones(1, 2, 3, requires_grad=True) * 3
    d = detach_hidden(h)
    assert not d.requires_grad and torch.equal(d, h)
    dh, dc = detach_hidden((h, c))
    assert not dh.requires_grad and not dc.requires_grad
    assert torch.equal(dc, c)
    assert detach_hidden(None) is None


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_tied_weights_are_one_tensor(cell: str) -> None:
    tied = RNNLM(V, cell=cell, embedding_dim=H, hidden_dim=H, tie_weights=True)
    untied = RNNLM(V, cell=cell, embedding_dim=H, hidden_dim=H, tie_weights=False)
    assert tied.decoder.weight is tied.embedding.weight
    assert tied.decoder.weight.data_ptr() == tied.embedding.weight.data_ptr()
    assert untied.decoder.weight is not untied.embedding.weight
    assert num_parameters(tied) == num_parameters(untied) - V * H
    # Still one tensor after an optimiser step and after loading a state dict.
    opt = torch.optim.SGD(tied.parameters(), lr=0.1)
    logits, _ = tied(torch.randint(0, V, (2, 3)))
    logits.sum().backward()
    opt.step()
    assert tied.decoder.weight.data_ptr() == tied.embedding.weight.data_ptr()
    tied.load_state_dict(tied.state_dict())
    assert tied.decoder.weight is tied.embedding.weight


def test_tie_weights_with_unequal_sizes_names_both_keys() -> None:
    with pytest.raises(ValueError) as info:
        RNNLM(V, cell="gru", embedding_dim=16, hidden_dim=32, tie_weights=True)
    msg = str(info.value)
    assert "model.embedding_dim" in msg and "model.hidden_dim" in msg
    assert "16" in msg and "32" in msg


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"cell": "transformer"}, "model.cell"),
        ({"hidden_dim": 0}, "model.hidden_dim"),
        ({"embedding_dim": 0}, "model.embedding_dim"),
        ({"num_layers": 0}, "model.num_layers"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"cell": "gru", "forget_bias": 1.0}, "model.forget_bias"),
    ],
)
def test_bad_arguments_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        RNNLM(V, **kwargs)


@pytest.mark.parametrize("last_hidden_dim", [None, 12])
def test_forget_bias_opens_the_forget_gate_and_null_is_the_default_init(
    last_hidden_dim: int | None,
) -> None:
    def build(forget_bias: float | None) -> RNNLM:
        torch.manual_seed(0)
        return RNNLM(
            V,
            cell="lstm",
            embedding_dim=8,
            hidden_dim=16,
            num_layers=2,
            last_hidden_dim=last_hidden_dim,
            forget_bias=forget_bias,
        )

    plain, opened = build(None), build(1.0)
    x = torch.randint(0, V, (2, 5))
    plain_state, opened_state = plain.state_dict(), opened.state_dict()
    biases = [k for k in plain_state if ".bias_" in k]
    assert len(biases) == 4  # bias_ih and bias_hh of both layers, one module or two
    for key, value in plain_state.items():
        if key not in biases:
            assert torch.equal(value, opened_state[key]), key
            continue
        h = value.numel() // 4  # gates i, f, g, o
        gate = opened_state[key][h : 2 * h]
        assert torch.all(gate == (1.0 if ".bias_ih" in key else 0.0)), key
        others = torch.cat([opened_state[key][:h], opened_state[key][2 * h :]])
        assert torch.equal(others, torch.cat([value[:h], value[2 * h :]])), key
    assert not torch.equal(opened(x)[0], plain(x)[0])


def test_dropout_is_active_in_train_mode_only() -> None:
    model = _model("gru", dropout=0.5)
    x = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        torch.manual_seed(0)
        a, _ = model.train()(x)
        torch.manual_seed(1)
        b, _ = model(x)
        c, _ = model.eval()(x)
        d, _ = model(x)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(c, d)


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_fast_dropout_drops_p_and_keeps_the_expectation(p: float) -> None:
    """regularization.dropout: the fraction dropped is p, kept units are scaled by 1/(1-p), the
    gradient is the same mask, and a seed gives the same mask."""
    from rnnlm.models.regularization import dropout

    x = torch.ones(257, 1001, requires_grad=True)  # an odd size: the 16-bit draws do not divide it
    torch.manual_seed(3)
    y = dropout(x, p, training=True)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - p) < 0.005
    torch.testing.assert_close(
        y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)), rtol=1e-4, atol=0
    )
    assert abs(float(y.detach().mean()) - 1.0) < 0.01
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())
    torch.manual_seed(3)
    torch.testing.assert_close(dropout(x, p, training=True), y)
    assert dropout(x, p, training=False) is x and dropout(x, 0.0, training=True) is x


def test_classic_dropout_between_layers_is_active_in_training_only() -> None:
    torch.manual_seed(0)
    model = RNNLM(30, cell="lstm", embedding_dim=8, hidden_dim=8, num_layers=3, dropout=0.3)
    x = torch.randint(0, 30, (4, 6))
    model.train()
    a, _ = model(x)
    b, _ = model(x)
    assert not torch.equal(a, b)
    model.eval()
    c, _ = model(x)
    d, _ = model(x)
    torch.testing.assert_close(c, d)
