"""Which model keys each parallel cell reads, and the one-line refusal of a key that means nothing for
the cell chosen. Imports nothing heavy: the config check (rnnlm/config/keys.py) reads it before a run
starts, and RNNLM reads it when it is built, so both refuse the same keys for the same reason.
"""

from __future__ import annotations

from typing import Any

PARALLEL_CELLS = ("mingru", "minlstm", "qrnn", "hawk", "mlstm")
# rnnlm/models/scan.py and fused_scan.py
SCAN_BACKENDS = ("auto", "fused", "chunked", "sequential", "log", "compile")
FUSED_CELLS = ("mingru", "minlstm", "qrnn")  # the cells fused_scan.cpp computes
# Every key of a cell's own (RNNLM's arguments), beside the shared ones of shared/recurrent_model.yaml.
CELL_OPTIONS = ("scan", "block", "conv_kernel", "mlp_mult", "heads", "chunk_size", "window")
# The model keys each cell reads; RNNLM refuses the others (set to anything but null) in one line.
CELL_KEYS: dict[str, set[str]] = {
    "mingru": {"scan", "block", "conv_kernel", "mlp_mult"},
    "minlstm": {"scan", "block", "conv_kernel", "mlp_mult"},
    "qrnn": {"scan", "window", "weight_drop"},
    "hawk": {"scan", "conv_kernel", "mlp_mult"},
    "mlstm": {"block", "conv_kernel", "mlp_mult", "heads", "chunk_size"},
}


def _owners(key: str) -> str:
    cells = [c for c, keys in CELL_KEYS.items() if key in keys]
    return ", ".join(cells + (["rnn", "lstm", "gru"] if key == "weight_drop" else []))


def check_heads(hidden_dim: int, heads: int) -> None:
    if hidden_dim % heads:
        raise ValueError(
            f"model.heads={heads} must divide model.hidden_dim={hidden_dim} (each head has "
            "hidden_dim / heads channels): change one of them"
        )


def check_cell_options(cell: str, options: dict[str, Any], hidden_dim: int | None = None) -> None:
    """Refuse, in one line, a key set for a cell that does not read it (e.g. model.heads for a GRU,
    weight_drop where there is no hidden-to-hidden matrix), and heads that do not divide the width."""
    own = CELL_KEYS.get(cell, {"weight_drop"})  # the classic cells read weight_drop only
    for key, value in options.items():
        if key in own or value is None or (key == "weight_drop" and not value):
            continue
        why = " (this cell has no hidden-to-hidden matrix to drop)" if key == "weight_drop" else ""
        raise ValueError(
            f"model.{key}={value} means nothing for model.cell={cell}{why}: leave it out (it applies "
            f"to {_owners(key)})"
        )
    if options.get("scan") == "fused" and cell not in FUSED_CELLS:
        raise ValueError(
            f"model.scan=fused has kernels for {', '.join(FUSED_CELLS)}, not model.cell={cell}: use "
            "model.scan=auto or chunked"
        )
    if cell == "mlstm" and options.get("heads") and hidden_dim:
        check_heads(hidden_dim, options["heads"])


__all__ = [
    "FUSED_CELLS",
    "CELL_KEYS",
    "CELL_OPTIONS",
    "PARALLEL_CELLS",
    "SCAN_BACKENDS",
    "check_cell_options",
    "check_heads",
]
