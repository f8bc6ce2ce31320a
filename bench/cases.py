"""The training-throughput cases of `make bench`: what is run, the rounds and their summary.

Each case (word, char, tiny) alternates, over several rounds, a run of the reference loop
(bench/reference.py, float32), a run of rnnlm as a user starts it (`python src/train.py experiment=...`)
with `trainer.precision=32-true`, and, where the machine computes bf16 natively (a CPU with AMX or
AVX-512 BF16, a CUDA GPU: bench/machine.py precision_plan), one with `trainer.precision=bf16-mixed`. All
train the same number of steps from scratch and time only the steps after the warm-up (the reference
itself, rnnlm through its TokensPerSecond callback in result.json); all then score the same first
validation windows. Alternating the sides spreads a machine's drifting load over them, and each ratio is
a median over rounds of the ratio within a round. How a side is run: bench/sides.py.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from corpus import zipf_corpus
from machine import loadavg
from sides import ROOT, log, run_reference, run_rnnlm

__all__ = ["CASES", "ROOT", "Case", "bench_case", "flops_per_token", "log"]


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


def flops_per_token(case: Case, vocab: int) -> float:
    """Training FLOPs per target token: forward (2 per multiply-add) plus backward (twice the forward),
    for the recurrent layers and the output layer (the embedding lookup is not a multiply)."""
    g = GATES[case.cell] * case.hid
    rnn = sum(2 * g * ((case.emb if i == 0 else case.hid) + case.hid) for i in range(case.layers))
    out = 2 * case.hid * vocab
    return 3.0 * (rnn + out)


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


def windows_per_epoch(data: Path, case: Case, batch: int) -> int:
    """Training windows in one pass over the train split (as bench/reference.py and rnnlm lay it out)."""
    text = (data / "train.txt").read_text(encoding="utf-8")
    tokens = len(text) if case.ref_config != "word" else len(text.split()) + len(text.splitlines())
    return math.ceil((tokens // batch - 1) / case.bptt)


def _ratio(rounds: list[dict], side: str, over: str) -> float:
    """Median over rounds of `side`'s tokens/s over `over`'s in the same round."""
    return statistics.median(x[side]["tokens_per_sec"] / x[over]["tokens_per_sec"] for x in rounds)


def _mean_ppl(rounds: list[dict], side: str) -> float:
    return statistics.mean(x[side]["val_ppl"] for x in rounds)


def bf16_summary(rounds: list[dict]) -> dict:
    """The bf16 side against the reference (float32) and against rnnlm's own float32 path; its
    validation perplexity against the float32 run's after the same steps."""
    ppl, fp32_ppl = _mean_ppl(rounds, "bf16"), _mean_ppl(rounds, "rnnlm")
    return {
        "tps": [x["bf16"]["tokens_per_sec"] for x in rounds],
        "vs_reference": _ratio(rounds, "bf16", "reference"),
        "vs_fp32": _ratio(rounds, "bf16", "rnnlm"),
        "val_ppl": ppl,
        "ppl_diff": ppl / fp32_ppl - 1,  # against rnnlm's float32 run
    }


LABELS = {"reference": "reference", "rnnlm": "rnnlm fp32", "bf16": "rnnlm bf16"}


def _round(case: Case, args: argparse.Namespace, data: Path, r: int) -> dict:
    """One round: reference, rnnlm float32 and (where args.bf16) rnnlm bf16, in that order."""
    seed, tag = 1111 + r, f"r{r + 1}"
    log(f"{case.name} round {r + 1}/{args.rounds} ({args.steps} steps) [load {loadavg()}]")
    out: dict = {"seed": seed, "reference": run_reference(case, args, data, seed, tag)}
    sides = ["rnnlm", "bf16"] if args.bf16 else ["rnnlm"]
    for side in sides:
        out[side] = run_rnnlm(case, args, data, seed, tag, side)
    log(
        "  "
        + "; ".join(
            f"{LABELS[s]} {out[s]['tokens_per_sec']:.0f} tokens/s, val ppl {out[s]['val_ppl']:.2f}"
            for s in ["reference", *sides]
        )
    )
    out["load"] = loadavg()
    return out


def bench_case(case: Case, args: argparse.Namespace) -> dict:
    """The case's alternating rounds and their summary: tokens/s, median ratios, mean perplexities
    (`bf16`: bf16_summary, or None where the bf16 side was not run)."""
    data = corpus_dir(case.corpus, args.work, args.quick)
    args.case_batch = args.batch or (case.gpu_batch if args.device == "cuda" else 0)
    args.steps = case.quick_steps if args.quick else case.steps
    args.warmup = case.quick_warmup if args.quick else case.warmup
    args.eval_windows = 5 if args.quick else case.eval_windows
    # All sides stop within the first epoch (validation comes after the last step).
    per_epoch = windows_per_epoch(data, case, args.case_batch or case.batch)
    if args.steps > per_epoch:
        args.steps = per_epoch
        args.warmup = min(args.warmup, per_epoch // 4)
    rounds = [_round(case, args, data, r) for r in range(args.rounds)]
    vocab = rounds[0]["reference"]["vocab"]
    ref_ppl, our_ppl = _mean_ppl(rounds, "reference"), _mean_ppl(rounds, "rnnlm")
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
        "reference_tps": [x["reference"]["tokens_per_sec"] for x in rounds],
        "rnnlm_tps": [x["rnnlm"]["tokens_per_sec"] for x in rounds],
        "ratio_median": _ratio(rounds, "rnnlm", "reference"),
        "target": case.target,
        "flops_per_token": flops_per_token(case, vocab),
        "reference_val_ppl": ref_ppl,
        "rnnlm_val_ppl": our_ppl,
        "ppl_diff": our_ppl / ref_ppl - 1,
        "bf16": bf16_summary(rounds) if args.bf16 else None,
    }
