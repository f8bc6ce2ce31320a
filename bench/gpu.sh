#!/usr/bin/env bash
# The throughput benchmark on one CUDA GPU, in at most 9 minutes: bench/reference.py (the classic loop,
# fp32, as the example runs on a GPU) against rnnlm (`trainer=gpu`: cuDNN RNNs, bf16 mixed precision),
# both with a larger batch than the CPU benchmark, alternating over 3 rounds for the word, char and tiny
# cases; then bench/cells.py --device cuda, one layer of each parallel cell against cuDNN's GRU.
# Writes benchmarks-gpu.md, results-gpu.json, cells-gpu.md and cells-gpu.json into $BENCH_OUT
# (default outputs/bench/).
#
#   bash bench/gpu.sh                        # from the repository root, or from anywhere
#   BENCH_OUT=/tmp/gpu-bench bash bench/gpu.sh
#   BENCH_GPU_BATCH=256 bash bench/gpu.sh    # the batch (columns) of every case; default 128
#
# Needs: Python with the project's pip packages (torch with CUDA, lightning, hydra-core, ...); `make install`
# or `pip install -e .` does it. Uses .venv/bin/python when it exists, else $PYTHON, else python3.
# Corpora: ../shared/data/{wikitext-2-mini,tinyshakespeare} (or $BENCH_DATA) when present; otherwise
# synthetic stand-ins with the same vocabulary sizes are generated (same shapes, same throughput).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
if [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=${PYTHON:-python3}
fi
export BENCH_OUT=${BENCH_OUT:-outputs/bench}
BATCH=${BENCH_GPU_BATCH:-}   # empty: each case's GPU batch (128)
LIMIT_S=${BENCH_GPU_LIMIT_S:-290}   # the whole run; the report is rewritten after every case

say() { printf '[gpu.sh %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

say "repository: $ROOT"
say "python: $($PY -c 'import sys; print(sys.executable, sys.version.split()[0])')"
if ! $PY -c 'import torch, lightning, hydra' 2>/dev/null; then
    say "error: torch, lightning or hydra-core is missing for $PY: run 'make install' or 'pip install -e .'"
    exit 2
fi
if ! $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    say "error: torch.cuda.is_available() is False for $PY: this script needs a CUDA GPU"
    exit 2
fi
$PY -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"[gpu.sh] GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,utilization.gpu,memory.used --format=csv,noheader || true

mkdir -p "$BENCH_OUT"
say "running bench/run.py --device cuda ${BATCH:+--batch $BATCH }(limit ${LIMIT_S}s); logs under $BENCH_OUT/runs-gpu/"
status=0
timeout --signal=INT "$LIMIT_S" "$PY" bench/run.py --device cuda --cases word,char,tiny --rounds 3 \
    ${BATCH:+--batch "$BATCH"} --out "$BENCH_OUT" || status=$?
if [[ -s "$BENCH_OUT/benchmarks-gpu.md" ]]; then
    say "table: $BENCH_OUT/benchmarks-gpu.md"
    cat "$BENCH_OUT/benchmarks-gpu.md"
fi
CELLS_LIMIT_S=${BENCH_GPU_CELLS_LIMIT_S:-240}
say "running bench/cells.py --device cuda: one layer of each parallel cell against cuDNN's GRU (limit ${CELLS_LIMIT_S}s)"
timeout --signal=INT "$CELLS_LIMIT_S" "$PY" bench/cells.py --device cuda --out "$BENCH_OUT/cells-gpu.json" \
    > "$BENCH_OUT/cells-gpu.md" || status=$?
[[ -s "$BENCH_OUT/cells-gpu.md" ]] && cat "$BENCH_OUT/cells-gpu.md"
if [[ $status -ne 0 ]]; then
    say "bench/run.py stopped with status $status (124/130: the time limit; the table above holds the cases that finished)"
    exit "$status"
fi
say "done"
