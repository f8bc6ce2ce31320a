"""`make bench`: rnnlm's training path against the classic PyTorch word-language-model loop.

For each case (word: the classic recipe on wikitext-2-mini; char: a 2 x 512 GRU on tinyshakespeare; tiny: a
1 x 64 GRU where per-step overhead dominates) it alternates, over several rounds, a run of the reference loop
(bench/reference.py) and a run of rnnlm exactly as a user starts it (`python src/train.py experiment=...`,
with the Trainer, DataModule, TensorBoard logger and checkpoints at their defaults). Both train the same
number of steps; only steps after the warm-up count (steady state: the reference times them itself, rnnlm's
TokensPerSecond callback writes them to result.json), and both then score the validation split.

Then: full vs adaptive softmax on a synthetic 250k-word Zipf corpus, and tokenising a generated 100 MB corpus
(char and word level: time, peak memory, and the next run's data setup from the memory-mapped cache).

It prints a Markdown table and, unless BENCH_QUICK=1, writes docs/benchmarks.md. BENCH_QUICK=1 runs every
part briefly (one round, a few steps, small corpora) to check that it works: its figures mean nothing.

    python bench/run.py                   # about 10 minutes on 2 cores
    BENCH_QUICK=1 python bench/run.py     # under 2 minutes
    python bench/run.py --device cuda     # on a GPU: bf16 mixed precision, larger batches (bench/gpu.sh)

Environment: BENCH_OUT (default outputs/bench/) for the results and logs, BENCH_DATA (default
../shared/data) for wikitext-2-mini and tinyshakespeare (synthetic stand-ins of the same vocabulary size are
generated when they are absent), BENCH_ROUNDS to change the number of rounds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from cells import bench_cells, render_cells  # noqa: E402
from corpus import zipf_corpus  # noqa: E402
from doc import write_section  # noqa: E402
from peak import matmul_peak  # noqa: E402
from startup import bench_refusals, render_refusals  # noqa: E402


@dataclass
class Case:
    name: str
    title: str
    experiment: str
    corpus: str  # folder name under BENCH_DATA
    ref_config: str  # bench/reference.py --config
    steps: int  # training steps per run (both sides); validation after the last one
    warmup: int  # steps not timed
    target: float  # rnnlm / reference tokens per second
    eval_windows: (
        int  # validation windows scored after the last step (the same first ones on both sides)
    )
    quick_steps: int = 12
    quick_warmup: int = 4
    gpu_batch: int = 128  # columns on a GPU (bench/gpu.sh), both sides
    # model shape, for FLOPs per token
    cell: str = "lstm"
    emb: int = 200
    hid: int = 200
    layers: int = 2
    batch: int = 20
    bptt: int = 35
    overrides: list[str] = field(default_factory=list)


CASES = {
    "word": Case(
        "word",
        "word level, classic recipe: 2 x 200 LSTM, batch 20, bptt 35 (wikitext-2-mini)",
        "bench_classic",
        "wikitext-2-mini",
        "word",
        steps=100,
        warmup=10,
        target=1.5,
        eval_windows=100,  # 35,000 of the split's 120,000 tokens
    ),
    "char": Case(
        "char",
        "char level: 2 x 512 GRU, batch 64, bptt 128 (tinyshakespeare)",
        "bench_char",
        "tinyshakespeare",
        "char",
        steps=12,
        warmup=3,
        target=1.0,
        eval_windows=30,  # 38,400 of the split's 111,540 characters
        quick_steps=4,
        quick_warmup=2,
        cell="gru",
        emb=512,
        hid=512,
        batch=64,
        bptt=128,
    ),
    "tiny": Case(
        "tiny",
        "tiny: char level, 1 x 64 GRU, batch 32, bptt 64 (tinyshakespeare)",
        "bench_tiny",
        "tinyshakespeare",
        "tiny",
        steps=200,
        warmup=20,
        target=0.8,
        eval_windows=60,  # 38,400 characters
        quick_steps=40,
        quick_warmup=10,
        cell="gru",
        emb=64,
        hid=64,
        layers=1,
        batch=32,
        bptt=64,
    ),
}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
ADAPTIVE_CUTOFFS = "[2000,20000,100000]"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the machine ---------------------------------------------------------------------------------------
def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine(device: str) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = math.nan
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
    try:
        import lightning

        info["lightning"] = lightning.__version__
    except ImportError:
        pass
    return info


def flops_per_token(case: Case, vocab: int) -> float:
    """Training FLOPs per target token: forward (2 per multiply-add) plus backward (twice the forward),
    for the recurrent layers and the output layer (the embedding lookup is not a multiply)."""
    g = GATES[case.cell] * case.hid
    rnn = sum(2 * g * ((case.emb if i == 0 else case.hid) + case.hid) for i in range(case.layers))
    out = 2 * case.hid * vocab
    return 3.0 * (rnn + out)


# -- the corpora ---------------------------------------------------------------------------------------
def corpus_dir(name: str, work: Path, quick: bool) -> Path:
    """The shared corpus, or a synthetic stand-in of the same vocabulary size when it is absent."""
    shared = Path(os.environ.get("BENCH_DATA", ROOT.parent / "shared" / "data")) / name
    if (shared / "train.txt").is_file():
        return shared
    log(f"{shared} not found: generating a synthetic stand-in")
    if name == "wikitext-2-mini":  # 13,775 words + <unk> + <eos> = its 13,777 types
        return zipf_corpus(work / "synthetic-word", vocab_size=13_775, train_mb=1.2, eval_mb=0.3)
    # characters: Zipf words over 26 letters (+ accents, space, newline)
    return zipf_corpus(work / "synthetic-char", vocab_size=20_000, train_mb=1.0, eval_mb=0.1)


# -- one run of each side ------------------------------------------------------------------------------
def run_child(
    cmd: list[str], log_file: Path, env: dict | None = None, timeout: float = 1800
) -> dict:
    """Run a command (output to log_file); its wall time and peak resident memory."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_file, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log_file.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); log {log_file}:\n{tail}")
    if wall > timeout:
        log(f"warning: {cmd[1]} took {wall:.0f} s")
    return {"wall_s": wall, "max_rss_mb": usage.ru_maxrss / 1024}


def run_reference(case: Case, args: argparse.Namespace, data: Path, seed: int, tag: str) -> dict:
    out = args.runs / f"{case.name}-reference-{tag}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "bench/reference.py",
        "--config",
        case.ref_config,
        "--data",
        str(data),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(seed),
        "--device",
        args.device,
        "--eval",
        "--json",
        str(out / "result.json"),
    ]
    if args.case_batch:
        cmd += ["--batch-size", str(args.case_batch)]
    cmd += ["--eval-windows", str(args.eval_windows)]
    run_child(cmd, out / "log.txt")
    r = json.loads((out / "result.json").read_text())
    return {
        "tokens_per_sec": r["tokens_per_sec"],
        "val_ppl": r.get("val_ppl"),
        "vocab": r["vocab_size"],
    }


def rnnlm_cmd(
    experiment: str, data: Path, out: Path, args: argparse.Namespace, *extra: str
) -> list[str]:
    cmd = [
        sys.executable,
        "src/train.py",
        f"experiment={experiment}",
        f"data.path={data}",
        f"hydra.run.dir={out}",
        "test=false",
    ]
    if args.device == "cuda":
        cmd.append("trainer=gpu")  # one GPU, bf16 mixed precision
    elif args.device == "cpu":
        cmd.append("trainer.accelerator=cpu")
    return cmd + list(extra)


def run_rnnlm(case: Case, args: argparse.Namespace, data: Path, seed: int, tag: str) -> dict:
    out = args.runs / f"{case.name}-rnnlm-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    extra = [
        f"seed={seed}",
        f"+trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.steps}",  # validate once, after the last step
        f"callbacks.tokens_per_sec.warmup_steps={args.warmup}",
        *case.overrides,
    ]
    if args.case_batch:
        extra.append(f"data.batch_size={args.case_batch}")
    extra.append(f"+trainer.limit_val_batches={args.eval_windows}")
    run_child(rnnlm_cmd(case.experiment, data, out, args, *extra), out / "log.txt", env=args.env)
    r = json.loads((out / "result.json").read_text())
    if r.get("status") != "finished":
        raise RuntimeError(f"rnnlm run {out} did not finish: {r}")
    return {"tokens_per_sec": r["steady_tokens_per_sec"], "val_ppl": r.get("best_val_ppl")}


def windows_per_epoch(data: Path, case: Case, batch: int) -> int:
    """Training windows in one pass over the train split (as bench/reference.py and rnnlm lay it out)."""
    text = (data / "train.txt").read_text(encoding="utf-8")
    tokens = len(text) if case.ref_config != "word" else len(text.split()) + len(text.splitlines())
    return math.ceil((tokens // batch - 1) / case.bptt)


def bench_case(case: Case, args: argparse.Namespace) -> dict:
    data = corpus_dir(case.corpus, args.work, args.quick)
    args.case_batch = args.batch or (case.gpu_batch if args.device == "cuda" else 0)
    args.steps = case.quick_steps if args.quick else case.steps
    args.warmup = case.quick_warmup if args.quick else case.warmup
    args.eval_windows = 5 if args.quick else case.eval_windows
    # Both sides stop within the first epoch (validation comes after the last step).
    per_epoch = windows_per_epoch(data, case, args.case_batch or case.batch)
    if args.steps > per_epoch:
        args.steps = per_epoch
        args.warmup = min(args.warmup, per_epoch // 4)
    rounds = []
    for r in range(args.rounds):
        seed = 1111 + r
        log(
            f"{case.name} round {r + 1}/{args.rounds}: reference ({args.steps} steps) ... [load {loadavg()}]"
        )
        a = run_reference(case, args, data, seed, f"r{r + 1}")
        log(
            f"  reference {a['tokens_per_sec']:.0f} tokens/s, val ppl {a['val_ppl']:.2f}; rnnlm ..."
        )
        b = run_rnnlm(case, args, data, seed, f"r{r + 1}")
        log(f"  rnnlm {b['tokens_per_sec']:.0f} tokens/s, val ppl {b['val_ppl']:.2f}")
        rounds.append({"seed": seed, "reference": a, "rnnlm": b, "load": loadavg()})
    vocab = rounds[0]["reference"]["vocab"]
    fpt = flops_per_token(case, vocab)
    ref_tps = [x["reference"]["tokens_per_sec"] for x in rounds]
    our_tps = [x["rnnlm"]["tokens_per_sec"] for x in rounds]
    ratio = statistics.median(b / a for a, b in zip(ref_tps, our_tps, strict=True))
    ref_ppl = statistics.mean(x["reference"]["val_ppl"] for x in rounds)
    our_ppl = statistics.mean(x["rnnlm"]["val_ppl"] for x in rounds)
    title = case.title
    if args.case_batch and args.case_batch != case.batch:
        title = f"{title}; batch {args.case_batch} here"
    return {
        "case": case.name,
        "title": title,
        "batch": args.case_batch or case.batch,
        "vocab": vocab,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": rounds,
        "reference_tps": ref_tps,
        "rnnlm_tps": our_tps,
        "ratio_median": ratio,
        "target": case.target,
        "flops_per_token": fpt,
        "reference_val_ppl": ref_ppl,
        "rnnlm_val_ppl": our_ppl,
        "ppl_diff": our_ppl / ref_ppl - 1,
    }


# -- large vocabulary: adaptive vs full softmax ----------------------------------------------------------
def bench_adaptive(args: argparse.Namespace, zipf: Path) -> dict:
    runs: dict[str, list[float]] = {"full": [], "adaptive": []}
    steps = {
        "full": (4, 2) if args.quick else (6, 2),
        "adaptive": (12, 4) if args.quick else (30, 10),
    }
    for r in range(args.rounds):
        for softmax in ("full", "adaptive"):
            n, w = steps[softmax]
            out = args.runs / f"zipf-{softmax}-r{r + 1}"
            shutil.rmtree(out, ignore_errors=True)
            extra = [
                f"model.softmax={softmax}",
                f"model.adaptive_cutoffs={ADAPTIVE_CUTOFFS}",
                f"+trainer.max_steps={n}",
                f"callbacks.tokens_per_sec.warmup_steps={w}",
                f"seed={1111 + r}",
            ]
            if args.batch:
                extra.append(f"data.batch_size={args.batch}")
            log(
                f"zipf 250k round {r + 1}/{args.rounds}: {softmax} softmax ({n} steps) [load {loadavg()}]"
            )
            cmd = rnnlm_cmd("bench_classic", zipf, out, args, *extra)
            run_child(cmd, out / "log.txt", env=args.env)
            res = json.loads((out / "result.json").read_text())
            runs[softmax].append(res["steady_tokens_per_sec"])
            log(f"  {res['steady_tokens_per_sec']:.0f} tokens/s")
    ratio = statistics.median(a / f for f, a in zip(runs["full"], runs["adaptive"], strict=True))
    return {"full_tps": runs["full"], "adaptive_tps": runs["adaptive"], "ratio_median": ratio}


# -- tokenising a large corpus -----------------------------------------------------------------------------
DATA_SETUP = r"""
import json, sys, time
t0 = time.perf_counter()
from rnnlm.data import LMDataModule
t1 = time.perf_counter()
path, kind, cache = sys.argv[1:4]
dm = LMDataModule(path=path, tokenizer=kind, cache_dir=cache, batch_size=20, bptt=35)
dm.load()
t2 = time.perf_counter()
dm.setup("fit")
t3 = time.perf_counter()
from rnnlm.data.sources import load_corpus
h0 = time.perf_counter()
load_corpus(path).fingerprint  # the token cache's key: SHA-256 of the text, part of load_s
h1 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "setup_s": t3 - t2, "data_s": t3 - t1,
                  "hash_s": h1 - h0, "tokens": dm.meta["tokens"], "vocab": dm.tokenizer.vocab_size}))
"""


def bench_tokenize(args: argparse.Namespace, zipf: Path) -> dict:
    rows = {}
    size_mb = sum((zipf / f"{s}.txt").stat().st_size for s in ("train", "valid", "test")) / 1e6
    for kind in ("char", "word"):
        cache = args.work / f"cache-tokenize-{kind}"
        shutil.rmtree(cache, ignore_errors=True)
        res = {}
        for attempt in ("first", "second"):
            log(f"tokenise {size_mb:.0f} MB, {kind} level, {attempt} run [load {loadavg()}]")
            logf = args.runs / f"tokenize-{kind}-{attempt}.txt"
            cmd = [sys.executable, "-c", DATA_SETUP, str(zipf), kind, str(cache)]
            usage = run_child(cmd, logf, env={"PYTHONPATH": str(ROOT / "src")})
            out = json.loads(logf.read_text().strip().splitlines()[-1])
            res[attempt] = {**out, **usage}
            log(f"  data setup {out['data_s']:.2f} s, peak memory {usage['max_rss_mb']:.0f} MB")
        rows[kind] = res
    # The adaptive runs read the word-level cache that was just built.
    args.env["RNNLM_DATA_DIR"] = str(args.work / "cache-tokenize-word")
    return {"size_mb": size_mb, **rows}


# -- the report ----------------------------------------------------------------------------------------------
def fmt_list(xs: list[float]) -> str:
    return " / ".join(f"{x:,.0f}" for x in xs)


def report(results: dict, args: argparse.Namespace) -> str:
    m = results["machine"]
    lines = [
        "## Speed (`make bench`)",
        "",
        "rnnlm's training path (`python src/train.py experiment=...`: Lightning Trainer, DataModule, "
        "TensorBoard logging and checkpoints at their defaults) against the classic PyTorch "
        "word-language-model loop (`bench/reference.py`, a faithful copy of pytorch/examples "
        "`word_language_model`), on the same model, data and hyperparameters.",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}, duration {results['duration_s'] / 60:.1f} min  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}  ",
        f"Software: Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), "
        f"Lightning {m.get('lightning', '?')}  ",
    ]
    if "gpu" in m:
        lines.append(f"GPU: {m['gpu']}, cuDNN {m.get('cudnn')}  ")
    lines += [
        f"Load average (1, 5, 15 min) at start: {results['load_start']}; at end: {results['load_end']}  ",
        f"Measured {results['peak_dtype']} matrix-multiply peak: {results['peak_gflops']:.0f} GFLOP/s "
        f"(best of repeated {'2048' if args.device == 'cpu' else '8192'}-square products, this run)"
        + (
            f"; float32: {results['peak_gflops_fp32']:.0f} GFLOP/s (the reference computes in float32, "
            "rnnlm in bf16 mixed precision: each side's fraction is of its own precision's peak)"
            if "peak_gflops_fp32" in results
            else ""
        ),
        "",
    ]
    if results.get("batch"):
        lines += [f"Batch (columns) of every case, both sides: {results['batch']}.", ""]
    if args.quick:
        lines += [
            "**BENCH_QUICK=1: a check that the benchmark runs; these figures mean nothing.**",
            "",
        ]
    if results.get("cases"):
        lines += [
            "### Training throughput (steady state)",
            "",
            f"Rounds alternate reference, rnnlm, reference, rnnlm, ... ({args.rounds} rounds, seeds 1111, "
            "1112, ...). Each run trains the given number of steps from scratch; the first (warm-up) steps "
            "are not timed, nor is validation. Ratio: median over rounds of rnnlm / reference. "
            "Peak fraction: model FLOPs per token (forward + backward of the recurrent and output layers) "
            "x tokens/s / measured matmul peak. Ceiling: the ratio rnnlm would reach with all of the "
            "model's FLOPs at rnnlm's peak, i.e. how far the same arithmetic can go on this machine. "
            "Validation perplexity: after the same steps, mean over the rounds, on the first windows of "
            "the validation split laid out in 10 columns (the recipe's eval batch; the same windows on "
            "both sides, see `eval_windows` in bench/run.py).",
            "",
            "| case | steps (warm-up) | reference tokens/s | rnnlm tokens/s | ratio (target) | "
            "% of peak ref / rnnlm | ceiling | val ppl ref / rnnlm (diff) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in results["cases"]:
            ok = "met" if c["ratio_median"] >= c["target"] else "NOT met"
            lines.append(
                f"| {c['title']} | {c['steps']} ({c['warmup']}) | {fmt_list(c['reference_tps'])} | "
                f"{fmt_list(c['rnnlm_tps'])} | **{c['ratio_median']:.2f}x** (>= {c['target']}x, {ok}) | "
                f"{100 * c['reference_peak_frac']:.0f}% / {100 * c['rnnlm_peak_frac']:.0f}% | "
                f"{c['ceiling']:.2f}x | "
                f"{c['reference_val_ppl']:.2f} / {c['rnnlm_val_ppl']:.2f} ({100 * c['ppl_diff']:+.2f}%) |"
            )
        lines += [
            "",
            "Validation perplexity of each round (seeds 1111, 1112, ...): the spread between seeds of one "
            "side is the scale against which the two sides' difference is read. That the two compute the "
            "same function and the same update is checked exactly, not statistically, by "
            "`tests/test_bench.py::test_rnnlm_does_the_reference_maths` (same weights after three steps, "
            "within 1e-4, with dropout off: with it on, each side draws its own random masks).",
            "",
        ]
        for c in results["cases"]:
            ref = " / ".join(f"{x['reference']['val_ppl']:.2f}" for x in c["rounds"])
            ours = " / ".join(f"{x['rnnlm']['val_ppl']:.2f}" for x in c["rounds"])
            lines.append(f"- {c['case']}: reference {ref}; rnnlm {ours}")
        lines.append("")
    if "adaptive" in results:
        a = results["adaptive"]
        lines += [
            "### Large vocabulary: adaptive vs full softmax",
            "",
            f"Synthetic Zipf corpus, 250,000 words (+ <unk>, <eos>), {results['tokenize']['size_mb']:.0f} MB; "
            f"the word-level classic model (`experiment=bench_classic`) with `model.softmax=full` vs "
            f"`model.softmax=adaptive model.adaptive_cutoffs={ADAPTIVE_CUTOFFS}`.",
            "",
            "| softmax | tokens/s (rounds) |",
            "|---|---|",
            f"| full | {fmt_list(a['full_tps'])} |",
            f"| adaptive | {fmt_list(a['adaptive_tps'])} |",
            "",
            f"Adaptive / full: **{a['ratio_median']:.1f}x** (median of rounds; target >= 3x, "
            f"{'met' if a['ratio_median'] >= 3 else 'NOT met'}).",
            "",
        ]
    if "tokenize" in results:
        t = results["tokenize"]
        lines += [
            "### Tokenising a large corpus",
            "",
            f"The same generated corpus ({t['size_mb']:.0f} MB of UTF-8 text), read through `LMDataModule` "
            "into an empty token cache (first run), then again from the cache (second run). Data setup = "
            "`load()` + `setup()`, after imports; peak memory = the process's maximum resident set, "
            "torch and Lightning included.",
            "",
            "| tokenizer | tokens (train) | vocabulary | first run: data setup | peak memory | "
            "second run: data setup | of which hashing the text | peak memory |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for kind in ("char", "word"):
            f, s = t[kind]["first"], t[kind]["second"]
            hashed = f"{s['hash_s']:.2f} s" if "hash_s" in s else "not measured"
            lines.append(
                f"| {kind} | {f['tokens']['train']:,} | {f['vocab']:,} | {f['data_s']:.1f} s | "
                f"{f['max_rss_mb']:,.0f} MB | {s['data_s']:.2f} s | {hashed} | {s['max_rss_mb']:,.0f} MB |"
            )
        lines += [
            "",
            "Targets: tokenising <= 60 s and <= 2 GB for each; a second run's data setup <= 2 s. The "
            "token cache is keyed by a SHA-256 of the text (not its size and mtime), read once per run.",
            "",
        ]
    if "refuse" in results:
        lines += render_refusals(results["refuse"])
    if "cells" in results:
        lines += render_cells(results["cells"])
    return "\n".join(lines)


def set_peak_fractions(results: dict) -> None:
    """Each side's model FLOP/s as a fraction of the measured peak of the precision it computes in."""
    ref_peak = results.get("peak_gflops_fp32", results["peak_gflops"])  # the reference: always fp32
    for c in results["cases"]:
        fpt = c["flops_per_token"]
        reference_flops = fpt * statistics.median(c["reference_tps"])  # FLOP/s
        c["reference_peak_frac"] = reference_flops / (ref_peak * 1e9)
        c["rnnlm_peak_frac"] = (
            fpt * statistics.median(c["rnnlm_tps"]) / (results["peak_gflops"] * 1e9)
        )
        # rnnlm at 100% of its peak, over the reference as measured (on a GPU the two peaks differ).
        c["ceiling"] = results["peak_gflops"] * 1e9 / reference_flops


ALL_CASES = "word,char,tiny,adaptive,tokenize,refuse,cells"


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
        "machine": machine(args.device),
        "cases": [],
    }
    peak_dtype = "bfloat16" if args.device == "cuda" else "float32"
    log(f"measuring the {peak_dtype} matrix-multiply peak ...")
    results["peak_dtype"] = peak_dtype
    results["peak_gflops"] = matmul_peak(args.device, peak_dtype, 1.0 if args.quick else 3.0)
    if args.device == "cuda":
        results["peak_gflops_fp32"] = matmul_peak(args.device, "float32", 1.0)
    log(f"  {results['peak_gflops']:.0f} GFLOP/s")
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
    if "refuse" in parts:
        log("refused commands ...")
        results["refuse"] = bench_refusals(3 if args.quick else 5, log)
        write_report(results, args, final=False)
    # A second peak measurement: the figure is the better of the two (the less disturbed by other load).
    results["peak_gflops"] = max(results["peak_gflops"], matmul_peak(args.device, peak_dtype, 1.0))
    write_report(results, args, final=True)


if __name__ == "__main__":
    main()
