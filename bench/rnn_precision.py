"""oneDNN's recurrent layers in bf16 (CPU autocast) against float32: speed and accuracy per cell and width.

The rule it checks is `rnnlm.models.classic.BF16_MIN_WIDTH`: under CPU autocast a layer at least that
wide runs its recurrence in bf16, a narrower one in float32. For each cell (rnn, lstm, gru) and width,
one layer over a (T, B, width) window, forward + backward, alternating float32 and bf16 in each round
(the median of the rounds' ratios); accuracy as the relative error of the output and of the input's
gradient against float64. Only meaningful on a CPU with AMX-BF16 or AVX-512 BF16 (elsewhere bf16 is
emulated and always slower).

    python bench/rnn_precision.py                  # about 2 minutes on 2 cores
    python bench/rnn_precision.py --quick          # a few seconds, figures meaningless
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rnnlm.models.classic import BF16_MIN_WIDTH, CELLS  # noqa: E402
from rnnlm.training.precision import cpu_bf16_units  # noqa: E402

WIDTHS = (64, 128, 256, 512)
KINDS = ("rnn", "lstm", "gru")


def _step(layer: torch.nn.Module, x: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y, _ = layer(x)
    y.float().square().sum().backward()
    return y.detach(), x.grad


def _seconds(layer: torch.nn.Module, x: torch.Tensor, bf16: bool, reps: int) -> float:
    _step(layer, x, bf16)  # warm-up: oneDNN builds its primitives on the first call
    t0 = time.perf_counter()
    for _ in range(reps):
        _step(layer, x, bf16)
    return (time.perf_counter() - t0) / reps


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).norm() / ref.norm())


def measure(kind: str, width: int, batch: int, bptt: int, rounds: int, reps: int) -> dict:
    torch.manual_seed(0)
    cls, extra = CELLS[kind]
    layer = cls(width, width, **extra)
    x = torch.randn(bptt, batch, width)
    ratios, fp32_s, bf16_s = [], [], []
    for _ in range(rounds):
        a = _seconds(layer, x, False, reps)
        b = _seconds(layer, x, True, reps)
        fp32_s.append(a)
        bf16_s.append(b)
        ratios.append(a / b)
    y32, g32 = _step(layer, x, False)
    y16, g16 = _step(layer, x, True)
    y64, g64 = _step(layer.double(), x.double(), False)
    tokens = batch * bptt
    return {
        "cell": kind,
        "width": width,
        "fp32_tokens_per_sec": tokens / statistics.median(fp32_s),
        "bf16_tokens_per_sec": tokens / statistics.median(bf16_s),
        "speedup": statistics.median(ratios),
        "fp32_out_err": _rel(y32, y64),
        "bf16_out_err": _rel(y16, y64),
        "fp32_grad_err": _rel(g32, g64),
        "bf16_grad_err": _rel(g16, g64),
        "rule": "bf16" if width >= BF16_MIN_WIDTH[kind] else "fp32",
    }


def render(rows: list[dict], args: argparse.Namespace) -> str:
    units = ", ".join(cpu_bf16_units()) or "none (bf16 emulated)"
    lines = [
        f"One layer, forward + backward, batch {args.batch}, bptt {args.bptt}, {args.rounds} alternating "
        f"rounds; CPU bf16 units: {units}; torch {torch.__version__}, {torch.get_num_threads()} threads.",
        "",
        "| cell | width | fp32 tokens/s | bf16 tokens/s | bf16 / fp32 | output error fp32 / bf16 | "
        "gradient error fp32 / bf16 | rnnlm runs |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['width']} | {r['fp32_tokens_per_sec']:,.0f} | "
            f"{r['bf16_tokens_per_sec']:,.0f} | {r['speedup']:.2f}x | "
            f"{r['fp32_out_err']:.1e} / {r['bf16_out_err']:.1e} | "
            f"{r['fp32_grad_err']:.1e} / {r['bf16_grad_err']:.1e} | {r['rule']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the rows as JSON here too")
    args = parser.parse_args()
    widths, reps = (WIDTHS[:2], 1) if args.quick else (WIDTHS, 2)
    args.rounds = 1 if args.quick else args.rounds
    rows = []
    for kind in KINDS:
        for w in widths:
            rows.append(measure(kind, w, args.batch, args.bptt, args.rounds, reps))
            r = rows[-1]
            print(f"{kind} {w}: {r['speedup']:.2f}x", file=sys.stderr, flush=True)
    text = render(rows, args)
    print(text, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "table": text}, indent=1))


if __name__ == "__main__":
    main()
