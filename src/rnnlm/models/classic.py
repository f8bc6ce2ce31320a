"""The classic torch.nn recurrent layers (RNN, LSTM, GRU) behind `RNNLM`: building them, their zero
state, and the state's two packings.

An LSTM carries (h, c), the other cells carry h alone; each tensor is (L, B, H). With layers of
different sizes (`last_hidden_dim`) the state is a flat tuple of per-layer (1, B, H_k) tensors:
(h_0, c_0, h_1, c_1, ...) for an LSTM, (h_0, h_1, ...) otherwise. Run layer by layer
(regularization.run_layers), the state is a list with one entry per layer: (h, c) or h, each (1, B, H_k).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

Hidden = Tensor | tuple[Tensor, ...]
LayerState = Tensor | tuple[Tensor, Tensor] | None

CELLS: dict[str, tuple[type[nn.RNNBase], dict]] = {
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}


# Under CPU autocast (bf16) a layer this wide or wider runs its recurrence in bf16 (oneDNN's bf16 LSTM
# on AMX / AVX-512 BF16; bf16 matrix multiplies in ATen's step loop for the GRU and RNN); a narrower one
# runs it in float32, where bf16 is slower: each step's matrix multiply is too small to repay the casts.
# Measured by bench/rnn_precision.py and, for the GRU, by the default model (docs/benchmarks.md).
BF16_MIN_WIDTH = {"rnn": 512, "rnn_relu": 512, "lstm": 128, "gru": 512}


@contextlib.contextmanager
def recurrence_precision(cell: str, width: int, device_type: str) -> Iterator[None]:
    """Inside CPU autocast, switch it off for the recurrence of a layer narrower than
    BF16_MIN_WIDTH[cell] (its input, the embedding's output, is float32 already)."""
    narrow = (
        device_type == "cpu" and torch.is_autocast_enabled("cpu") and width < BF16_MIN_WIDTH[cell]
    )
    with torch.autocast("cpu", enabled=False) if narrow else contextlib.nullcontext():
        yield


def as_dtype(hidden: Hidden, dtype: torch.dtype) -> Hidden:
    """The state in the parameters' dtype: under autocast oneDNN's LSTM hands back a bf16 (h, c), which a
    float32 call (evaluation, generation, a narrow layer) cannot take; cast once per window."""
    if isinstance(hidden, tuple):
        return tuple(h if h.dtype == dtype else h.to(dtype) for h in hidden)
    return hidden if hidden.dtype == dtype else hidden.to(dtype)


def one_module(cell: str, embedding_dim: int, hidden_dim: int, num_layers: int) -> nn.RNNBase:
    """All layers in one torch.nn module: one oneDNN / cuDNN call over the window."""
    rnn_cls, extra = CELLS[cell]
    return rnn_cls(embedding_dim, hidden_dim, num_layers=num_layers, **extra)


def split_layers(
    cell: str, embedding_dim: int, hidden_dim: int, num_layers: int, out_dim: int
) -> nn.ModuleList:
    """One module per layer, the last one `out_dim` wide (AWD-LSTM: as wide as the embedding, to tie)."""
    rnn_cls, extra = CELLS[cell]
    sizes = [hidden_dim] * (num_layers - 1) + [out_dim]
    return nn.ModuleList(
        rnn_cls(n_in, n_out, **extra)
        for n_in, n_out in zip([embedding_dim, *sizes[:-1]], sizes, strict=True)
    )


def zero_state(
    cell: str, layers: nn.RNNBase | nn.ModuleList, batch_size: int, like: Tensor
) -> Hidden:
    """The zero state of one module, (L, B, H), or of split layers, the flat per-layer tuple."""
    lstm = cell == "lstm"
    if isinstance(layers, nn.RNNBase):
        h = like.new_zeros(layers.num_layers, batch_size, layers.hidden_size)
        return (h, h.clone()) if lstm else h
    states: list[Tensor] = []
    for m in layers:
        h = like.new_zeros(1, batch_size, m.hidden_size)
        states += [h, h.clone()] if lstm else [h]
    return tuple(states)


def open_forget_gates(modules: list[nn.RNNBase], forget_bias: float) -> None:
    """Gers et al. 2000, Jozefowicz et al. 2015: an open forget gate at the start, so the cell keeps its
    state (and its gradient) from the first update on. PyTorch's LSTM gates are stacked i, f, g, o in
    each (4H,) bias; the gate sees bias_ih + bias_hh."""
    for rnn in modules:
        for name, p in rnn.named_parameters():
            if name.startswith("bias_"):
                h = rnn.hidden_size
                with torch.no_grad():
                    p[h : 2 * h] = forget_bias if name.startswith("bias_ih") else 0.0


def per_layer(hidden: Hidden | None, num_layers: int, lstm: bool, split: bool) -> list[LayerState]:
    """The packed state as one entry per layer, for running the layers one at a time."""
    if hidden is None:
        return [None] * num_layers
    if split and lstm:
        return [(hidden[2 * k], hidden[2 * k + 1]) for k in range(num_layers)]
    if split:
        return list(hidden)
    if lstm:
        return [(hidden[0][k : k + 1], hidden[1][k : k + 1]) for k in range(num_layers)]
    return [hidden[k : k + 1] for k in range(num_layers)]


def packed(states: list, lstm: bool, split: bool) -> Hidden:
    """The per-layer states back in the packing `RNNLM` hands out (the inverse of `per_layer`)."""
    if split:
        return tuple(t for state in states for t in (state if lstm else (state,)))
    if lstm:
        return (torch.cat([h for h, _ in states]), torch.cat([c for _, c in states]))
    return torch.cat(states)


__all__ = [
    "BF16_MIN_WIDTH",
    "CELLS",
    "as_dtype",
    "recurrence_precision",
    "Hidden",
    "one_module",
    "open_forget_gates",
    "packed",
    "per_layer",
    "split_layers",
    "zero_state",
]
