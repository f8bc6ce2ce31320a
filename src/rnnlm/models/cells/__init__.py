"""Recurrent cells that train in parallel over time: every one has a parallel form for a window and a
step form for one token (base.Recurrence), and all but mLSTM share one linear scan (models/scan.py).

| cell      | paper                                   | state                          | file       |
|-----------|-----------------------------------------|--------------------------------|------------|
| `mingru`  | Feng et al. 2024                        | h                              | mingru.py  |
| `minlstm` | Feng et al. 2024                        | h                              | mingru.py  |
| `qrnn`    | Bradbury et al. 2016 (fo-pooling)       | c (and the last input, k = 2)  | qrnn.py    |
| `hawk`    | De et al. 2024 (Griffin's RG-LRU block) | h (float32), the conv's inputs | hawk.py    |
| `mlstm`   | Beck et al. 2024 (xLSTM)                | C, n, m                        | mlstm.py   |

`CellStack` (stack.py) puts num_layers of them between RNNLM's embedding and its output layer; which
model keys each cell reads is keys.py (torch-free: the config check reads it). Names are imported on
first use.
"""

from __future__ import annotations

from rnnlm.lazy import lazy_getattr

_WHERE = {
    "CellStack": "rnnlm.models.cells.stack",
    "Recurrence": "rnnlm.models.cells.base",
    "State": "rnnlm.models.cells.base",
    "CELL_KEYS": "rnnlm.models.cells.keys",
    "PARALLEL_CELLS": "rnnlm.models.cells.keys",
    "check_cell_options": "rnnlm.models.cells.keys",
}


__getattr__ = lazy_getattr(__name__, _WHERE)


__all__ = sorted(_WHERE)
