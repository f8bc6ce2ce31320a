"""The two parts of `make bench` on a large generated corpus (a 250k-word Zipf vocabulary, 100 MB).

Adaptive vs full softmax: with 250,000 words the output layer is most of a step, which is what the
adaptive softmax is for; alternating rounds of rnnlm with each. Tokenising: the corpus read into an
empty token cache, then again from the cache, each in a process of its own, for its wall time and peak
memory. Apart from the training cases (bench/cases.py) since neither has a reference side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from machine import loadavg
from sides import ROOT, log, rnnlm_cmd, run_child

ADAPTIVE_CUTOFFS = "[2000,20000,100000]"


def bench_adaptive(args: argparse.Namespace, zipf: Path) -> dict:
    """rnnlm's tokens/s with each softmax over alternating rounds, and the median adaptive / full."""
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


# The data setup as a training run does it, timed in a fresh process (imports apart).
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
    """Char and word level: a first run into an empty cache, a second from it (time, peak memory)."""
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
