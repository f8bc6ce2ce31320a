"""What every cell of rnnlm/models/cells/ is: a layer with a parallel form and a step form.

    forward(x (T, B, in_dim), state | None) -> (y (T, B, out_dim), state)   the whole window at once
    step(x (B, in_dim), state | None)        -> (y (B, out_dim), state)      one token, O(1) time and memory

The two agree (tests/models/test_cells.py). A state is a tuple of tensors, each (1, B, ...): batch at dim 1,
like the (L, B, H) state of nn.GRU, so the code that carries, detaches, repeats, gathers (DDP) and
checkpoints hidden states treats every cell alike. None is the zero state.

Also here: the pieces several cells use (a causal depthwise convolution that carries its last inputs,
the activation g of Feng et al. 2024).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, ...]


class Recurrence(nn.Module):
    in_dim: int
    out_dim: int

    def init_state(self, batch: int, like: Tensor) -> State:
        """The zero state for `batch` rows (device and dtype of `like`)."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        raise NotImplementedError

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One token: the parallel form over a window of length 1 is already O(1) for every cell."""
        y, state = self(x.unsqueeze(0), state)
        return y[0], state


def g(x: Tensor) -> Tensor:
    """Feng et al. 2024, eq. (log-space minGRU): x + 0.5 for x >= 0, sigmoid(x) below; positive,
    continuous, and linear for large x, so the candidate state neither vanishes nor saturates."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


class CausalConv(nn.Module):
    """Depthwise convolution over time of width k, y_t = sum_j w_j * x_{t-k+1+j} + bias: each channel
    reads its own last k inputs. The k-1 inputs before the window come from the state (1, B, k-1, D), so
    a stream read in windows is convolved as one sequence."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(kernel, dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.uniform_(self.weight, -1 / kernel**0.5, 1 / kernel**0.5)

    def init_state(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros(1, batch, self.kernel - 1, self.weight.size(1))

    def forward(self, x: Tensor, past: Tensor | None) -> tuple[Tensor, Tensor]:
        """x (T, B, D), past (1, B, k-1, D) -> y (T, B, D), the new past."""
        t = x.size(0)
        if past is None:
            past = self.init_state(x.size(1), x)
        xx = torch.cat([past[0].transpose(0, 1).to(x.dtype), x])  # (k-1+T, B, D)
        y = self.bias.to(x.dtype).expand_as(x)
        for j in range(self.kernel):
            y = torch.addcmul(y, xx[j : j + t], self.weight[j].to(x.dtype))
        return y, xx[-(self.kernel - 1) :].transpose(0, 1).unsqueeze(0)


class GatedMLP(nn.Module):
    """The position-wise feed-forward of the blocks: down(gelu(gate(x)) * up(x)) (Shazeer 2020)."""

    def __init__(self, dim: int, mult: float) -> None:
        super().__init__()
        inner = max(1, int(round(dim * mult)))
        self.up = nn.Linear(dim, 2 * inner)
        self.down = nn.Linear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.up(x).chunk(2, -1)
        return self.down(F.gelu(gate) * value)


def at_least_fp32(x: Tensor) -> Tensor:
    """x in float32, or as it is if it is already float32 or wider: the recurrences run in float32
    under bf16/fp16 autocast (the Griffin paper's advice for its state), and float64 stays exact."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def state_rows(state: State | None, k: int) -> Tensor | None:
    """Entry k of a state as (B, ...) (the leading 1 dropped), or None for the zero state."""
    return None if state is None else state[k][0]


__all__ = ["CausalConv", "GatedMLP", "Recurrence", "State", "at_least_fp32", "g", "state_rows"]
