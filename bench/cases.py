"""The training-throughput cases of `make bench`: what is run, how each side is timed, the rounds.

Each case (word, char, tiny) alternates, over several rounds, a run of the reference loop
(bench/reference.py) and a run of rnnlm as a user starts it (`python src/train.py experiment=...`). Both
train the same number of steps from scratch and time only the steps after the warm-up (the reference
itself, rnnlm through its TokensPerSecond callback in result.json); both then score the same first
validation windows. Alternating the sides spreads a machine's drifting load over both, and the ratio is a
median over rounds. The runs are child processes, so that each side pays its own start-up and memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from corpus import zipf_corpus
from machine import loadavg

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    """One model and corpus, run by both sides with the same hyperparameters."""

    name: str
    title: str
    experiment: str
    corpus: str  # folder name under BENCH_DATA
    ref_config: str  # bench/reference.py --config
    steps: int  # training steps per run (both sides); validation after the last one
    warmup: int  # steps not timed
    target: float  # rnnlm / reference tokens per second
    # validation windows scored after the last step (the same first ones on both sides)
    eval_windows: int
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


def log(msg: str) -> None:
    """A time-stamped progress line (a full run takes minutes; each line says where it is)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def flops_per_token(case: Case, vocab: int) -> float:
    """Training FLOPs per target token: forward (2 per multiply-add) plus backward (twice the forward),
    for the recurrent layers and the output layer (the embedding lookup is not a multiply)."""
    g = GATES[case.cell] * case.hid
    rnn = sum(2 * g * ((case.emb if i == 0 else case.hid) + case.hid) for i in range(case.layers))
    out = 2 * case.hid * vocab
    return 3.0 * (rnn + out)


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
    """One run of the classic loop: its steady tokens/s, validation perplexity and vocabulary size."""
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
    """`python src/train.py experiment=...` as a user types it, on `args.device`."""
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
    """One run of rnnlm: its steady tokens/s and validation perplexity, from its result.json."""
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
    """The case's alternating rounds and their summary: tokens/s, median ratio, mean perplexities."""
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
