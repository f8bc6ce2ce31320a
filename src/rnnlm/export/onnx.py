"""One step of a language model as an ONNX graph, the recurrent state as input and output.

    inputs   tokens (B, T) int64, state0 .. stateK-1          (each state tensor has the batch at dim 1)
    outputs  logits (B, T, V), new_state0 .. new_stateK-1     (feed them back as the next state)

The classic cells (RNN, LSTM, GRU) export as ONNX's own RNN/LSTM/GRU operators and read any T (a
prompt in one call). The parallel cells export their step form, T = 1: their scan over a window is a
Python loop over chunks that a trace would fix to one length, and generation reads a token at a time
anyway. The file carries what it needs to generate on its own (metadata: the tokenizer, the state's
shapes, the time axis): rnnlm.export.onnx_runtime.OnnxLM.

The TorchScript exporter (`dynamo=False`) is used: torch.export's exporter fixes the window length of
nn.GRU/LSTM to the example's (checked with torch 2.14: a graph traced at T = 7 refuses T = 1).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from rnnlm.errors import UserError

EXTRA = "pip install 'rnnlm[export]'"
OPSET = 17


class ExportError(UserError):
    """A model or a setting the ONNX export cannot take; the message says what to do instead."""


class StepGraph(nn.Module):
    """forward(tokens, [state leaves]) -> (logits, *new state leaves): the model with a flat state."""

    def __init__(self, model: nn.Module, spec: pytree.TreeSpec) -> None:
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, tokens: Tensor, state: list[Tensor]) -> tuple[Tensor, ...]:
        logits, new = self.model(tokens, pytree.tree_unflatten(list(state), self.spec))
        return (logits, *pytree.tree_leaves(new))


def dynamic_time(model: nn.Module) -> bool:
    """Whether the graph reads any window length: the classic cells (one ONNX RNN operator)."""
    return model.stack is None


@contextlib.contextmanager
def sequential_scans(model: nn.Module) -> Iterator[None]:
    """Every cell's scan backend set to `sequential` (plain tensor ops at T = 1), restored after."""
    saved = [(m, m.scan) for m in model.modules() if isinstance(getattr(m, "scan", None), str)]
    try:
        for m, _ in saved:
            m.scan = "sequential"
        yield
    finally:
        for m, scan in saved:
            m.scan = scan


def _rms_norm(g: Any, x: Any, normalized_shape: Any, weight: Any, eps: Any) -> Any:
    """aten::rms_norm over the last axis (nn.RMSNorm(dim)), which opset 17 has no operator for."""
    from torch.onnx import symbolic_helper as sh

    shape = sh._maybe_get_const(normalized_shape, "is")
    if not isinstance(shape, list) or len(shape) != 1:
        raise ExportError("ONNX export: RMSNorm over more than the last axis is not supported")
    value = sh._maybe_get_const(eps, "f")
    eps_value = float(value) if isinstance(value, float) else torch.finfo(torch.float32).eps
    mean_square = g.op("ReduceMean", g.op("Mul", x, x), axes_i=[-1], keepdims_i=1)
    denom = g.op(
        "Sqrt", g.op("Add", mean_square, g.op("Constant", value_t=torch.tensor(eps_value)))
    )
    y = g.op("Div", x, denom)
    return y if sh._is_none(weight) else g.op("Mul", y, weight)


def _expm1(g: Any, x: Any) -> Any:
    """aten::expm1 (Hawk's sqrt(1 - a^2)), which opset 17 lacks: exp(x) - 1, and near 0, where that
    cancels, its series x + x^2/2 + x^3/6."""

    def const(v: float) -> Any:
        return g.op("Constant", value_t=torch.tensor(v))

    series = g.op(
        "Mul",
        x,
        g.op(
            "Add", const(1.0), g.op("Mul", x, g.op("Add", const(0.5), g.op("Mul", x, const(1 / 6))))
        ),
    )
    small = g.op("Less", g.op("Abs", x), const(1e-3))
    return g.op("Where", small, series, g.op("Sub", g.op("Exp", x), const(1.0)))


def export_onnx(lm: Any, out: str | Path, opset: int = OPSET) -> dict[str, Any]:
    """Write `lm` (a LanguageModel) to `out` as an ONNX graph; what was written (names, shapes)."""
    try:
        import onnx
    except ImportError:
        raise ExportError(f"ONNX export needs onnx and onnxruntime: {EXTRA}") from None
    if opset < 14:
        raise ExportError(
            f"opset={opset} is too old for these models: use 14 or newer (default {OPSET})"
        )
    from rnnlm.models import RNNLM

    model = lm.model.eval()
    if not isinstance(model, RNNLM):
        raise ExportError(
            f"ONNX export covers the recurrent models (model=rnn|lstm|gru and the parallel cells), "
            f"not {type(model).__name__}: its state is the growing window of past tokens"
        )
    leaves, spec = pytree.tree_flatten(model.init_hidden(1))
    timed = dynamic_time(model)
    tokens = torch.full((1, 3 if timed else 1), lm.start_id, dtype=torch.long)
    states = [f"state{i}" for i in range(len(leaves))]
    news = [f"new_state{i}" for i in range(len(leaves))]
    tokens_axes = {0: "batch", 1: "time"} if timed else {0: "batch"}
    axes = {"tokens": tokens_axes, "logits": tokens_axes}
    axes.update({name: {1: "batch"} for name in states + news})
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.register_custom_op_symbolic("aten::rms_norm", _rms_norm, opset)
    torch.onnx.register_custom_op_symbolic("aten::expm1", _expm1, opset)
    with torch.no_grad(), sequential_scans(model), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # the TorchScript exporter's deprecation notice, trace notes
        torch.onnx.export(
            StepGraph(model, spec).eval(),  # the exporter puts it back in this mode after
            (tokens, list(leaves)),
            str(path),
            input_names=["tokens", *states],
            output_names=["logits", *news],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    if [i.name for i in graph.graph.input] != ["tokens", *states]:
        path.unlink()
        raise ExportError(
            "ONNX export: the traced graph dropped part of the recurrent state (the model ignores it "
            "in a trace); this model cannot be exported"
        )
    meta = {
        "rnnlm_tokenizer": json.dumps(lm.tokenizer.to_dict()),
        "rnnlm_state": json.dumps([list(t.shape) for t in leaves]),
        "rnnlm_time": "dynamic" if timed else "1",
        "rnnlm_start_id": str(lm.start_id),
        "rnnlm_model": json.dumps(lm.model_config or {}),
    }
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    return {"path": path, "states": [tuple(t.shape) for t in leaves], "time": meta["rnnlm_time"]}
