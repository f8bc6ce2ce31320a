"""The regularisers of AWD-LSTM (Merity, Keskar & Socher 2017, "Regularizing and Optimizing LSTM Language
Models"), written for today's PyTorch: plain functions over tensors, no wrapper modules.

- `dropout`: element-wise dropout, as `F.dropout` but with its mask drawn several times faster on a CPU;
- `locked_dropout`: variational dropout (Gal & Ghahramani 2016), one mask per sequence shared by every
  time step of a window;
- `embedding_dropout`: drops whole word types from a window (every occurrence of a dropped word is zeroed);
- `run_layers`: runs a multi-layer `nn.RNN`/`nn.LSTM`/`nn.GRU` one layer at a time, with a dropout between
  layers and, optionally, DropConnect on each layer's hidden-to-hidden matrix (weight drop, Wan et al.
  2013). The original AWD-LSTM `WeightDrop` deleted the module's parameter and re-assigned a plain tensor
  before every call, which breaks on PyTorch >= 1.0 (the flattened cuDNN weights go stale, parameters
  vanish from `state_dict`). Here the module keeps its parameters untouched: each layer is run by the
  same kernel `nn.LSTM.forward` calls (`torch._VF.lstm`/`gru`/`rnn_tanh`/`rnn_relu`, cuDNN on a GPU), given
  that layer's weight list with the dropped matrix in place of `weight_hh`. Gradients flow to the
  parameter through the mask; DDP sees ordinary parameters.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The kernel nn.RNNBase.forward calls for each cell (mode names of nn.RNNBase).
_KERNELS = {
    "LSTM": torch._VF.lstm,
    "GRU": torch._VF.gru,
    "RNN_TANH": torch._VF.rnn_tanh,
    "RNN_RELU": torch._VF.rnn_relu,
}


# cuDNN copies the weights of a layer run this way into one buffer at every call (it must anyway: the
# dropped matrix is new at every call) and warns about it once. The copy costs a few percent
# (docs/how-it-works.md, section 7); the warning says nothing actionable.
warnings.filterwarnings(
    "ignore", message="RNN module weights are not part of single contiguous chunk of memory"
)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Element-wise (inverted) dropout: each element zeroed with probability p, the rest scaled so that
    the expectation is x. The same maths as `F.dropout`, with p rounded to a multiple of 1/65536.

    Why not `F.dropout`: on a CPU it draws one Mersenne-Twister number per element (Bernoulli), a
    visible share of a small model's training step. Here one 64-bit draw gives four 16-bit uniform
    numbers, compared with the threshold in one vectorised pass (docs/how-it-works.md, section 7, has
    the cost of each). On other devices this is `F.dropout`.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    n = x.numel()
    dropped = round(p * 65536)  # P(drop) = dropped / 65536
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits
    keep = bits.view(torch.int16)[:n].view(x.shape) >= dropped - 32768
    mask = keep.to(x.dtype).mul_(65536 / (65536 - dropped))  # 0 or 1/(1-p), reused by the backward
    return x * mask


def locked_dropout(x: Tensor, p: float, training: bool, time_dim: int = 1) -> Tensor:
    """Dropout with one mask per sequence: the same units are dropped at every step of the window.

    x is (B, T, D) with `time_dim=1` (batch first) or (T, B, D) with `time_dim=0`.
    """
    if not training or p == 0.0:
        return x
    shape = list(x.shape)
    shape[time_dim] = 1
    mask = x.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
    return x * mask


def embedding_dropout(
    emb: Tensor, x: Tensor, num_embeddings: int, p: float, training: bool
) -> Tensor:
    """Zero the embedding of whole word types with probability p (scaled by 1/(1-p) otherwise).

    Same result and gradients as AWD-LSTM's `embedded_dropout` (which masks rows of the weight
    matrix), without building a masked copy of the (V, E) matrix: one draw per vocabulary entry,
    gathered for the window's tokens.
    """
    if not training or p == 0.0:
        return emb
    keep = emb.new_empty(num_embeddings).bernoulli_(1.0 - p).div_(1.0 - p)
    return emb * keep[x].unsqueeze(-1)


def _layer_weights(rnn: nn.RNNBase, layer: int) -> list[Tensor]:
    names = [f"weight_ih_l{layer}", f"weight_hh_l{layer}"]
    if rnn.bias:
        names += [f"bias_ih_l{layer}", f"bias_hh_l{layer}"]
    return [getattr(rnn, n) for n in names]


Layer = tuple[nn.RNNBase, int]  # a module and the index of one of its layers
State = Tensor | tuple[Tensor, Tensor]  # one layer's state, (1, B, H) (LSTM: h and c)


def run_layers(
    layers: list[Layer],
    x: Tensor,
    states: list[State | None],
    between: float,
    locked: bool,
    weight_drop: float,
) -> tuple[Tensor, list[State]]:
    """The layers applied in turn to x, with the regularisers of AWD-LSTM; returns the last layer's
    output and each layer's new state.

    `layers` are (module, layer index) pairs: the layers of one multi-layer `nn.LSTM`/`nn.GRU`/`nn.RNN`,
    or single-layer modules of different sizes. `between`: dropout on each layer's output that feeds the
    next layer (locked: one mask per sequence, else a fresh mask per element like nn.LSTM's own
    `dropout`); `weight_drop`: DropConnect on every `weight_hh` (a fresh mask per call, shared by all
    time steps). Both act in training mode only; with both 0 the result equals the module's own
    forward (same kernels, same weights).
    """
    out = x
    new_states: list[State] = []
    for n, ((rnn, k), state) in enumerate(zip(layers, states, strict=True)):
        if rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise ValueError("run_layers supports unidirectional RNNs without projections")
        kernel = _KERNELS[rnn.mode]
        lstm = rnn.mode == "LSTM"
        batch_first = rnn.batch_first
        training = rnn.training
        if state is None:
            zeros = out.new_zeros(1, out.size(0 if batch_first else 1), rnn.hidden_size)
            state = (zeros, zeros) if lstm else zeros
        weights = _layer_weights(rnn, k)
        if training and weight_drop > 0.0:
            weights[1] = dropout(weights[1], weight_drop, True)
        if lstm:
            out, h, c = kernel(out, state, weights, rnn.bias, 1, 0.0, training, False, batch_first)
            new_states.append((h, c))
        else:
            out, h = kernel(out, state, weights, rnn.bias, 1, 0.0, training, False, batch_first)
            new_states.append(h)
        if n < len(layers) - 1 and training and between > 0.0:
            if locked:
                out = locked_dropout(out, between, True, time_dim=1 if batch_first else 0)
            else:
                out = dropout(out, between, True)
    return out, new_states


__all__ = ["dropout", "embedding_dropout", "locked_dropout", "run_layers"]
