"""`make bench`: rnnlm's training path against the classic PyTorch word-language-model loop.

For each case (word: the classic recipe on wikitext-2-mini; char: a 2 x 512 GRU on tinyshakespeare; tiny: a
1 x 64 GRU where per-step overhead dominates) it alternates, over several rounds, a run of the reference loop
(bench/reference.py, float32) and runs of rnnlm exactly as a user starts it (`python src/train.py
experiment=...`, with the Trainer, DataModule, TensorBoard logger and checkpoints at their defaults): with
`trainer.precision=32-true` and, where the CPU has AMX or AVX-512 BF16 (or on a CUDA GPU), with
`trainer.precision=bf16-mixed`. All train the same number of steps; only steps after the warm-up count
(steady state: the reference times them itself, rnnlm's TokensPerSecond callback writes them to
result.json), and all then score the validation split.

Then: full vs adaptive softmax on a synthetic 250k-word Zipf corpus, and tokenising a generated 100 MB corpus
(char and word level: time, peak memory, and the next run's data setup from the memory-mapped cache).

It prints a Markdown table and, unless BENCH_QUICK=1, writes docs/benchmarks.md. BENCH_QUICK=1 runs every
part briefly (one round, a few steps, small corpora) to check that it works: its figures mean nothing.

    python bench/run.py                   # about 20 minutes on 2 cores (with the bf16 side)
    BENCH_QUICK=1 python bench/run.py     # a few minutes
    python bench/run.py --device cuda     # on a GPU: larger batches (bench/gpu.sh)

Environment: BENCH_OUT (default outputs/bench/) for the results and logs, BENCH_DATA (default
../shared/data) for wikitext-2-mini and tinyshakespeare (synthetic stand-ins of the same vocabulary size are
generated when they are absent), BENCH_ROUNDS to change the number of rounds.

This file is the command line and the order of the parts. The training cases and how each side is timed:
bench/cases.py and bench/sides.py; adaptive softmax and tokenising on the generated corpus:
bench/large_corpus.py; the machine (CPU and its bf16 flags, cores, versions, load, the float32 and bf16
matmul peaks): bench/machine.py; figures derived from the measured ones (peak fractions, ceilings, the
goals): bench/figures.py; the report: bench/render.py, whose wording is bench/benchmarks.md.tmpl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(1, str(ROOT / "src"))  # rnnlm.training.precision, also without `pip install -e .`

from cases import CASES, bench_case, log  # noqa: E402
from cells import bench_cells  # noqa: E402
from corpus import zipf_corpus  # noqa: E402
from doc import write_section  # noqa: E402
from figures import set_peak_fractions  # noqa: E402
from large_corpus import bench_adaptive, bench_tokenize  # noqa: E402
from machine import describe, loadavg, measure_peak, precision_plan, remeasure_peak  # noqa: E402
from onnx_gen import bench_onnx  # noqa: E402
from render import report  # noqa: E402
from startup import bench_refusals  # noqa: E402

__all__ = ["ALL_CASES", "CASES", "main", "report", "set_peak_fractions"]

ALL_CASES = "word,char,tiny,adaptive,tokenize,refuse,cells,onnx"


def write_doc(text: str, args: argparse.Namespace) -> None:
    """The report into docs/benchmarks.md's speed section (`--doc` elsewhere); a quick, GPU or partial
    (`--cases`) run writes it only when `--doc` says where."""
    full = not args.quick and args.device == "cpu" and args.cases == ALL_CASES
    doc = args.doc or (ROOT / "docs" / "benchmarks.md" if full else None)
    if doc:
        write_section(Path(doc), "bench", text)
        log(f"written {doc} (its speed section)")


def write_report(results: dict, args: argparse.Namespace, final: bool) -> None:
    """The report so far (rewritten after every part, so a run stopped early still leaves a table)."""
    results["load_end"] = loadavg()
    results["duration_s"] = time.perf_counter() - args.t_start
    set_peak_fractions(results)
    text = report(results, args)
    suffix = "-gpu" if args.device == "cuda" else ""
    (args.out / f"results{suffix}.json").write_text(json.dumps(results, indent=1))
    (args.out / f"benchmarks{suffix}.md").write_text(text + "\n")
    if not final:
        return
    print("\n" + text, flush=True)
    write_doc(text, args)
    log(
        f"written {args.out / f'benchmarks{suffix}.md'} and results{suffix}.json ({results['duration_s']:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cases", default=ALL_CASES, help="comma-separated parts to run")
    parser.add_argument(
        "--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 0)) or None
    )
    parser.add_argument(
        "--batch", type=int, default=0, help="columns for both sides (0: each case's)"
    )
    parser.add_argument(
        "--tokenize-mb",
        type=float,
        default=0,
        help="size of the generated corpus for the tokenize and adaptive cases (0: 100 MB, quick 5 MB; "
        "540 is WikiText-103-sized)",
    )
    parser.add_argument("--out", default=os.environ.get("BENCH_OUT", "outputs/bench"))
    parser.add_argument(
        "--doc",
        default=None,
        help="write the report here too (default: docs/benchmarks.md for a full CPU run)",
    )
    parser.add_argument(
        "--render",
        default=None,
        help="only re-write the report from a results.json of an earlier run (no measurement)",
    )
    args = parser.parse_args()
    args.t_start = time.perf_counter()
    if args.render:
        results = json.loads(Path(args.render).read_text())
        args.quick = results["quick"]
        args.device = results["device"]
        args.rounds = len(results["cases"][0]["rounds"]) if results.get("cases") else 0
        if results.get("cases"):
            set_peak_fractions(results)  # derived figures, also for a results.json older than them
        text = report(results, args)
        print(text)
        write_doc(text, args)
        return
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.out = Path(args.out) if os.path.isabs(args.out) else (Path.cwd() / args.out).resolve()
    args.runs = args.out / ("runs-gpu" if args.device == "cuda" else "runs")
    args.work = args.out / "work"
    args.work.mkdir(parents=True, exist_ok=True)
    # rnnlm runs: their own token cache and output folder, nothing under ~/.cache
    args.env = {"RNNLM_DATA_DIR": str(args.work / "cache"), "RNNLM_OUTPUT_DIR": str(args.runs)}
    parts = [p.strip() for p in args.cases.split(",") if p.strip()]
    command = "BENCH_QUICK=1 make bench" if args.quick else "make bench"
    if args.device == "cuda":
        command = "bash bench/gpu.sh"
    results: dict = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_start": loadavg(),
        "quick": args.quick,
        "device": args.device,
        "batch": args.batch or None,
        "machine": describe(args.device),
        "cases": [],
    }
    results["precision"] = plan = precision_plan(args.device)
    args.bf16 = plan["bf16"]
    log(
        f"bf16 side: {'run on ' if args.bf16 else 'not run: '}{plan['bf16_why']}; "
        f"trainer.precision=auto picks {plan['auto']} here"
    )
    log("measuring the matrix-multiply peaks ...")
    results.update(measure_peak(args.device, args.quick, args.bf16))
    log(
        "  "
        + ", ".join(f"{k}: {v:.0f} GFLOP/s" for k, v in results.items() if k.startswith("peak_"))
    )
    for name in ("word", "char", "tiny"):
        if name in parts:
            results["cases"].append(bench_case(CASES[name], args))
            write_report(results, args, final=False)
    if "tokenize" in parts or "adaptive" in parts:
        log("generating the Zipf corpus (250k words) ...")
        train_mb = args.tokenize_mb or (5.0 if args.quick else 100.0)
        zipf = zipf_corpus(args.work / f"zipf-250k-{train_mb:g}mb", 250_000, train_mb, eval_mb=0.2)
        results["tokenize"] = bench_tokenize(args, zipf)
        write_report(results, args, final=False)
        if "adaptive" in parts:
            results["adaptive"] = bench_adaptive(args, zipf)
    if "cells" in parts and args.device == "cpu":
        log("parallel cells against nn.GRU ...")
        results["cells"] = bench_cells(args.quick, log)
        write_report(results, args, final=False)
    if "onnx" in parts and args.device == "cpu":
        log("generation: ONNX Runtime against PyTorch ...")
        results["onnx"] = bench_onnx(args.quick, log)
        write_report(results, args, final=False)
    if "refuse" in parts:
        log("refused commands ...")
        results["refuse"] = bench_refusals(3 if args.quick else 5, log)
        write_report(results, args, final=False)
    # A second peak measurement: the figure is the better of the two (the less disturbed by other load).
    results.update(remeasure_peak(args.device, results))
    write_report(results, args, final=True)


if __name__ == "__main__":
    main()
