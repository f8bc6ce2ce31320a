"""One recurrent layer of each cell against nn.GRU at matched parameters (`make bench`, part `cells`).

Training: forward + backward of one layer on random inputs, batch 32, nn.GRU of width 512 (1.58 M
parameters) against each cell at the width that matches its parameter count within 5% (a multiple of
16, which the matrix kernels prefer), at bptt 128, 512 and 2048; rounds alternate GRU, cell, GRU, cell,
... and the ratio is the median over rounds of cell / GRU tokens/s. Peak memory: how far a step at bptt
2048 raises the process's maximum resident set above what it was with the layer and its input built
(torch's own footprint left out), each case in a process of its own. Generation: the step form,
one sequence (batch 1), tokens/s over 500 steps after 50 warm-up steps.
On a GPU (`--device cuda`, run by bench/gpu.sh): the same cases against cuDNN's GRU, the scans as
`model.scan=compile`, and peak memory as torch.cuda.max_memory_allocated above the layer and input.
Run alone: `python bench/cells.py [--quick] [--device cuda]` prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import precision_plan  # noqa: E402
from peak import matmul_peak  # noqa: E402

BATCH = 32
GRU_WIDTH = 512
# cell -> (width, keyword arguments): one layer with about nn.GRU(512, 512)'s 1.58 M parameters.
CELLS = {
    "mingru": (896, {}),
    "minlstm": (720, {}),
    "qrnn": (512, {"window": 2}),
    "hawk": (560, {"mlp_mult": 0.0, "conv_kernel": 4}),
    "mlstm": (624, {"heads": 4}),
}

CHILD = r"""
import json, resource, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from rnnlm.training.launch import keep_large_blocks_in_heap
keep_large_blocks_in_heap()  # as src/train.py does: big blocks reused, not page-faulted in again
spec = json.loads(sys.argv[2])
device = torch.device(spec.get("device", "cpu"))
cuda = device.type == "cuda"
sync = torch.cuda.synchronize if cuda else (lambda: None)
torch.manual_seed(0)
name, width, kw = spec["cell"], spec["width"], dict(spec["kwargs"])
if name == "gru":
    layer = torch.nn.GRU(width, width)
else:
    from rnnlm.models.cells.stack import _cell
    from rnnlm.models.cells.hawk import HawkBlock
    if cuda and name != "mlstm":
        kw["scan"] = "compile"
    if name == "hawk":
        layer = HawkBlock(width, kw["mlp_mult"], kw["conv_kernel"], kw.get("scan", "chunked"))
    else:
        layer = _cell(name, width, width, kw)
layer = layer.to(device)
run = lambda x, s=None: layer(x, s)
params = sum(p.numel() for p in layer.parameters())
out = {"params": params}


def peak_mb():
    if cuda:
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if spec["mode"] == "train":
    x = torch.randn(spec["bptt"], spec["batch"], width, device=device, requires_grad=True)
    bf16 = spec.get("precision") == "bf16-mixed"  # as trainer.precision=bf16-mixed runs a model

    def train_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            y = run(x)[0]
        y.sum().backward()

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    base = peak_mb()
    for _ in range(3 if cuda else 1):  # warm-up (on a GPU also torch.compile's first calls)
        train_step()
    sync()
    steps, t0 = 0, time.perf_counter()
    while steps < spec["min_steps"] or time.perf_counter() - t0 < spec["seconds"]:
        train_step()
        steps += 1
        if cuda:
            sync()
    dt = (time.perf_counter() - t0) / steps
    out["tokens_per_sec"] = spec["bptt"] * spec["batch"] / dt
    out["max_rss_mb"] = peak_mb() - base
else:
    layer.eval()
    x = torch.randn(1, 1, width, device=device)
    with torch.no_grad():
        y, s = run(x)
        for _ in range(50):
            y, s = run(x, s)
        sync()
        t0 = time.perf_counter()
        for _ in range(500):
            y, s = run(x, s)
        sync()
        out["tokens_per_sec"] = 500 / (time.perf_counter() - t0)
print(json.dumps(out))
"""


def measure(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "src"), json.dumps(spec)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def precisions(device: str) -> list[str]:
    """32-true always; bf16-mixed too where the hardware computes bf16 (AMX, AVX-512 BF16, a bf16 GPU),
    which is what trainer.precision=auto picks there."""
    return ["32-true"] + (["bf16-mixed"] if precision_plan(device)["bf16"] else [])


def bench_cells(quick: bool, log: callable, device: str = "cpu") -> dict:  # type: ignore[valid-type]
    rounds = 1 if quick else 3
    bptts = (128,) if quick else (128, 512, 2048)
    seconds = 0.5 if quick else 2.0
    cells = dict(list(CELLS.items())[:2]) if quick else CELLS
    results: dict = {
        "peak_gflops_fp32": matmul_peak(device, "float32", 1.0 if quick else 3.0),
        "device": device,
        "batch": BATCH,
        "gru_width": GRU_WIDTH,
        "rounds": rounds,
        "train": {},
        "gen": {},
    }
    for precision in precisions(device):
        results["train"][precision] = _train_rows(
            precision, bptts, cells, rounds, seconds, device, log
        )
    # the better of two peak measurements: the one less disturbed by other load
    results["peak_gflops_fp32"] = max(
        results["peak_gflops_fp32"], matmul_peak(device, "float32", 1.0)
    )
    if "bf16-mixed" in results["train"]:
        results["peak_gflops_bf16"] = matmul_peak(device, "bfloat16", 1.0 if quick else 3.0)
    for name, (width, kw) in {"gru": (GRU_WIDTH, {}), **cells}.items():
        gen = [
            measure({"mode": "gen", "cell": name, "width": width, "kwargs": kw, "device": device})
            for _ in range(rounds)
        ]
        results["gen"][name] = statistics.median(g["tokens_per_sec"] for g in gen)
        log(f"  generation {name}: {results['gen'][name]:.0f} tokens/s")
    return results


def _train_rows(
    precision: str,
    bptts: tuple,
    cells: dict,
    rounds: int,
    seconds: float,
    device: str,
    log: callable,  # type: ignore[valid-type]
) -> dict:
    rows: dict = {}
    for bptt in bptts:
        row: dict = {}
        for name, (width, kw) in cells.items():
            gru, cell = [], []
            for _ in range(rounds):  # alternating: the machine's drift hits both sides alike
                base = {
                    "batch": BATCH,
                    "bptt": bptt,
                    "mode": "train",
                    "seconds": seconds,
                    "min_steps": 2,
                    "device": device,
                    "precision": precision,
                }
                gru.append(measure({**base, "cell": "gru", "width": GRU_WIDTH, "kwargs": {}}))
                cell.append(measure({**base, "cell": name, "width": width, "kwargs": kw}))
            ratio = statistics.median(
                c["tokens_per_sec"] / g["tokens_per_sec"] for g, c in zip(gru, cell, strict=True)
            )
            row[name] = {
                "width": width,
                "params": cell[0]["params"],
                "gru_params": gru[0]["params"],
                "gru_tokens_per_sec": statistics.median(g["tokens_per_sec"] for g in gru),
                "tokens_per_sec": statistics.median(c["tokens_per_sec"] for c in cell),
                "ratio": ratio,
                "max_rss_mb": max(c["max_rss_mb"] for c in cell),
                "gru_max_rss_mb": max(g["max_rss_mb"] for g in gru),
            }
            log(f"  {precision} bptt {bptt} {name}: {ratio:.2f}x nn.GRU")
        rows[str(bptt)] = row
    return rows


def render_cells(r: dict) -> list[str]:
    cuda = r.get("device") == "cuda"
    lines = [
        "### Parallel cells against nn.GRU, one layer at matched parameters"
        + (" (CUDA)" if cuda else ""),
        "",
        f"Forward + backward of one layer, batch {r['batch']}, random inputs; nn.GRU of width "
        f"{r['gru_width']} against each cell at the width that matches its parameters, both at the "
        f"same precision; median of {r['rounds']} alternating rounds (bench/cells.py). Generation: "
        "the step form, batch 1, float32."
        + (" On CUDA: cuDNN's GRU, the scans torch.compile'd." if cuda else ""),
    ]
    for precision, rows in r["train"].items():
        lines += _train_table(precision, rows, r["gen"])
    peak = r.get("peak_gflops_fp32")
    if peak and "32-true" in r["train"]:
        # Every cell does about nn.GRU's matrix work per token (matched parameters; forward 2 FLOPs per
        # weight, backward twice that): how close nn.GRU is to the peak bounds any cell's speed-up.
        rows = r["train"]["32-true"]
        lines += ["", f"float32 matrix-multiply peak: {peak:.0f} GFLOP/s"
                  + (f", bfloat16: {r['peak_gflops_bf16']:.0f} GFLOP/s" if r.get("peak_gflops_bf16") else "")
                  + ". nn.GRU's float32 training FLOP rate (6 FLOPs per weight per token) and the "
                  "speed-up a cell of the same matrix work would have at the float32 peak:"]  # fmt: skip
        for b, row in rows.items():
            some = next(iter(row.values()))
            gflops = 6 * some["gru_params"] * some["gru_tokens_per_sec"] / 1e9
            lines.append(
                f"- bptt {b}: {gflops:.0f} GFLOP/s, {gflops / peak:.0%} of the peak: at most "
                f"{peak / gflops:.2f}x"
            )
    lines += [
        "",
        "Goals (issue 21): the fastest cell >= 1.5x / 3x / 4x at bptt 128 / 512 / 2048, peak memory at "
        "2048 <= 2x nn.GRU's, generation >= nn.GRU's.",
        "",
    ]
    return lines


def _train_table(precision: str, rows: dict, gen: dict) -> list[str]:
    bptts = list(rows)
    lines = [
        "",
        f"trainer.precision={precision}:",
        "",
        "| cell | width | parameters (GRU) | "
        + " | ".join(f"bptt {b}: cell / GRU tokens/s" for b in bptts)
        + f" | step's peak memory at bptt {bptts[-1]} (GRU) | generation tokens/s (GRU) |",
        "|---|---:|---:|" + "---:|" * len(bptts) + "---:|---:|",
    ]
    for name in rows[bptts[0]]:
        first, last = rows[bptts[0]][name], rows[bptts[-1]][name]
        lines.append(
            f"| {name} | {first['width']} | {first['params'] / 1e6:.2f} M ({first['gru_params'] / 1e6:.2f} M) | "
            + " | ".join(
                f"{x['ratio']:.2f}x ({x['tokens_per_sec'] / 1e3:.1f} k / {x['gru_tokens_per_sec'] / 1e3:.1f} k)"
                for x in (rows[b][name] for b in bptts)
            )
            + f" | {last['max_rss_mb']:,.0f} MB ({last['gru_max_rss_mb']:,.0f} MB) | "
            f"{gen[name]:,.0f} ({gen['gru']:,.0f}) |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=None, help="write the results as JSON here too")
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = bench_cells(args.quick, lambda m: print(m, file=sys.stderr, flush=True), args.device)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print("\n".join(render_cells(results)))
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
