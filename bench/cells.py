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
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    base = peak_mb()
    for _ in range(3 if cuda else 1):  # warm-up (on a GPU also torch.compile's first calls)
        run(x)[0].sum().backward()
    sync()
    steps, t0 = 0, time.perf_counter()
    while steps < spec["min_steps"] or time.perf_counter() - t0 < spec["seconds"]:
        run(x)[0].sum().backward()
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


def bench_cells(quick: bool, log: callable, device: str = "cpu") -> dict:  # type: ignore[valid-type]
    rounds = 1 if quick else 3
    bptts = (128,) if quick else (128, 512, 2048)
    seconds = 0.5 if quick else 3.0
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
            log(f"  bptt {bptt} {name}: {ratio:.2f}x nn.GRU")
        results["train"][str(bptt)] = row
    # the better of two peak measurements: the one less disturbed by other load
    results["peak_gflops_fp32"] = max(
        results["peak_gflops_fp32"], matmul_peak(device, "float32", 1.0)
    )
    for name, (width, kw) in {"gru": (GRU_WIDTH, {}), **cells}.items():
        gen = [
            measure({"mode": "gen", "cell": name, "width": width, "kwargs": kw, "device": device})
            for _ in range(rounds)
        ]
        results["gen"][name] = statistics.median(g["tokens_per_sec"] for g in gen)
        log(f"  generation {name}: {results['gen'][name]:.0f} tokens/s")
    return results


def render_cells(r: dict) -> list[str]:
    bptts = list(r["train"])
    cells = list(r["train"][bptts[0]])
    lines = [
        "### Parallel cells against nn.GRU, one layer at matched parameters"
        + (" (CUDA)" if r.get("device") == "cuda" else ""),
        "",
        f"Forward + backward of one layer, batch {r['batch']}, random inputs; nn.GRU of width "
        f"{r['gru_width']} against each cell at the width that matches its parameters; median of "
        f"{r['rounds']} alternating rounds (bench/cells.py). Generation: the step form, batch 1."
        + (
            " On CUDA: cuDNN's GRU, the scans torch.compile'd." if r.get("device") == "cuda" else ""
        ),
        "",
        "| cell | width | parameters (GRU) | "
        + " | ".join(f"bptt {b}: cell / GRU tokens/s" for b in bptts)
        + f" | step's peak memory at bptt {bptts[-1]} (GRU) | generation tokens/s (GRU) |",
        "|---|---:|---:|" + "---:|" * len(bptts) + "---:|---:|",
    ]
    for name in cells:
        first, last = r["train"][bptts[0]][name], r["train"][bptts[-1]][name]
        ratios = [r["train"][b][name] for b in bptts]
        lines.append(
            f"| {name} | {first['width']} | {first['params'] / 1e6:.2f} M ({first['gru_params'] / 1e6:.2f} M) | "
            + " | ".join(
                f"{x['ratio']:.2f}x ({x['tokens_per_sec'] / 1e3:.1f} k / {x['gru_tokens_per_sec'] / 1e3:.1f} k)"
                for x in ratios
            )
            + f" | {last['max_rss_mb']:,.0f} MB ({last['gru_max_rss_mb']:,.0f} MB) | "
            f"{r['gen'][name]:,.0f} ({r['gen']['gru']:,.0f}) |"
        )
    peak = r.get("peak_gflops_fp32")
    if peak:
        # Every cell does about nn.GRU's matrix work per token (matched parameters; forward 2 FLOPs per
        # weight, backward twice that): how close nn.GRU is to the peak bounds any cell's speed-up.
        lines += ["", f"float32 matrix-multiply peak: {peak:.0f} GFLOP/s. nn.GRU's training FLOP rate "
                  "(6 FLOPs per weight per token) and the speed-up a cell of the same matrix work "
                  "would have at the peak:"]  # fmt: skip
        for b in bptts:
            some = next(iter(r["train"][b].values()))
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
