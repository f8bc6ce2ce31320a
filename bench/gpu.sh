#!/usr/bin/env bash
# The throughput benchmark on one CUDA GPU, in at most 5 minutes all told (BENCH_GPU_TOTAL_S, default 295):
# bench/reference.py (the classic loop, float32, as the example runs on a GPU) against rnnlm (`trainer=gpu`,
# cuDNN RNNs, the fused chunked loss of the bench_* experiments) with `trainer.precision=32-true` and with
# `trainer.precision=bf16-mixed` (autocast, the fused loss under it), all with a larger batch than the CPU
# benchmark, alternating over 1 round (BENCH_GPU_ROUNDS) for the word, char and tiny cases; then
# bench/cells.py --device cuda --quick: one layer of minGRU and minLSTM against cuDNN's GRU at bptt 128
# (the whole cells table, `python bench/cells.py --device cuda`, takes longer than this script may).
# Prints the cells table, then the throughput table last. Writes benchmarks-gpu.md, results-gpu.json,
# run-gpu.log, cells-gpu.md, cells-gpu.json and cells-gpu.log into $BENCH_OUT (default outputs/bench/).
#
#   bash bench/gpu.sh                        # from the repository root, or from anywhere
#   BENCH_OUT=/tmp/gpu-bench bash bench/gpu.sh
#   BENCH_GPU_BATCH=256 bash bench/gpu.sh    # the batch (columns) of every case; default each case's (128)
#   BENCH_GPU_DEVICE=cpu BENCH_QUICK=1 bash bench/gpu.sh   # the same script on the CPU, briefly: a check
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
DEVICE=${BENCH_GPU_DEVICE:-cuda}
BATCH=${BENCH_GPU_BATCH:-}          # empty: each case's GPU batch (128)
ROUNDS=${BENCH_GPU_ROUNDS:-1}
QUICK=""
if [[ ${BENCH_QUICK:-} == 1 ]]; then QUICK=--quick; fi
DEADLINE=$((SECONDS + ${BENCH_GPU_TOTAL_S:-295}))   # every step below is cut at this deadline
RUN_MAX_S=${BENCH_GPU_LIMIT_S:-200}                 # bench/run.py at most; the report is rewritten after each case
CELLS_MIN_S=75                                      # kept for bench/cells.py
SUFFIX=""   # bench/run.py's file names: benchmarks-gpu.md on a GPU
if [[ $DEVICE == cuda ]]; then SUFFIX=-gpu; fi

say() { printf '[gpu.sh %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
left() { echo $((DEADLINE - SECONDS)); }
limit() { local l; l=$(left); echo $(($1 < l ? $1 : (l > 1 ? l : 1))); }   # min(wanted, time left)

say "repository: $ROOT (deadline in $(left) s)"
say "python: $(timeout "$(limit 30)" "$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
if ! timeout "$(limit 60)" "$PY" -c 'import torch, lightning, hydra' 2>/dev/null; then
    say "error: torch, lightning or hydra-core is missing for $PY: run 'make install' or 'pip install -e .'"
    exit 2
fi
if [[ $DEVICE == cuda ]]; then
    if ! timeout "$(limit 60)" "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        say "error: torch.cuda.is_available() is False for $PY: this script needs a CUDA GPU"
        exit 2
    fi
    timeout "$(limit 60)" "$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"[gpu.sh] GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, bf16 {torch.cuda.is_bf16_supported(including_emulation=False)}")'
    command -v nvidia-smi >/dev/null && timeout 10 nvidia-smi --query-gpu=name,driver_version,utilization.gpu,memory.used --format=csv,noheader || true
fi

mkdir -p "$BENCH_OUT"
status=0
RUN_S=$(limit "$RUN_MAX_S")
if ((RUN_S > $(left) - CELLS_MIN_S && $(left) - CELLS_MIN_S > 0)); then RUN_S=$(($(left) - CELLS_MIN_S)); fi
say "bench/run.py --device $DEVICE: reference fp32, rnnlm 32-true and bf16-mixed, $ROUNDS round(s) ${BATCH:+--batch $BATCH }(limit ${RUN_S}s); log $BENCH_OUT/run$SUFFIX.log"
timeout --signal=INT "$RUN_S" "$PY" bench/run.py --device "$DEVICE" --cases word,char,tiny \
    --rounds "$ROUNDS" ${QUICK:+"$QUICK"} ${BATCH:+--batch "$BATCH"} --out "$BENCH_OUT" \
    > "$BENCH_OUT/run$SUFFIX.log" 2>&1 || status=$?
grep '^\[bench' "$BENCH_OUT/run$SUFFIX.log" || true   # the progress lines (the table comes last)
if [[ $status -ne 0 ]]; then grep -v '^\[bench' "$BENCH_OUT/run$SUFFIX.log" | tail -n 20; fi

CELLS_S=$(limit $(($(left) - 5)))
say "bench/cells.py --device $DEVICE --quick: minGRU and minLSTM against nn.GRU (cuDNN's on a GPU; limit ${CELLS_S}s)"
cells_status=0
timeout --signal=INT "$CELLS_S" "$PY" bench/cells.py --device "$DEVICE" --quick \
    --out "$BENCH_OUT/cells$SUFFIX.json" > "$BENCH_OUT/cells$SUFFIX.md" 2> "$BENCH_OUT/cells$SUFFIX.log" \
    || cells_status=$?
if [[ -s "$BENCH_OUT/cells$SUFFIX.md" ]]; then
    cat "$BENCH_OUT/cells$SUFFIX.md"
else
    say "bench/cells.py stopped with status $cells_status (124/130: the time limit):"
    tail -n 20 "$BENCH_OUT/cells$SUFFIX.log"
fi

if [[ -s "$BENCH_OUT/benchmarks$SUFFIX.md" ]]; then
    say "table: $BENCH_OUT/benchmarks$SUFFIX.md"
    cat "$BENCH_OUT/benchmarks$SUFFIX.md"
fi
if [[ $status -ne 0 ]]; then
    say "bench/run.py stopped with status $status (124/130: the time limit; the table above holds the cases that finished)"
    exit "$status"
fi
if [[ $cells_status -ne 0 ]]; then exit "$cells_status"; fi
say "done in $SECONDS s"
