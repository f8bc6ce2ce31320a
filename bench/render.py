"""The speed section of docs/benchmarks.md, from a results dict (`make bench`, `bench/run.py --render`).

The wording lives in bench/benchmarks.md.tmpl, so that a sentence of the report is edited as text; this
module chooses the sections that the results call for, formats the figures that are not a single value
(lists of rounds, percentages) and fills the sections in. The refused commands and the parallel cells
render their own tables (bench/startup.py, bench/cells.py), next to what they measure.
"""

from __future__ import annotations

import argparse
from functools import cache
from pathlib import Path

from cells import render_cells
from figures import (
    AUTO_VS_FP32,
    CHAR_BF16_VS_FP32,
    PPL_TOLERANCE,
    TINY_AUTO_VS_REFERENCE,
    WORD_BF16_VS_REFERENCE,
    goals,
    peaks,
    ppl_ok,
)
from large_corpus import ADAPTIVE_CUTOFFS
from onnx_gen import render_onnx
from startup import render_refusals

TEMPLATE = Path(__file__).with_name("benchmarks.md.tmpl")
ADAPTIVE_TARGET = 3  # adaptive / full softmax tokens/s


@cache
def sections(path: Path = TEMPLATE) -> dict[str, str]:
    """The template's sections by name: the lines after each `%% name[: note]` line up to the next."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None  # the text before the first marker says how to read the file
    for line in path.read_text(encoding="utf-8").removesuffix("\n").split("\n"):
        if line.startswith("%% "):
            current = found.setdefault(line[3:].split(":", 1)[0].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def fill(name: str, **values: object) -> str:
    """Section `name` of the template with `values` put in."""
    return sections()[name].format(**values)


def fmt_list(xs: list[float]) -> str:
    """Tokens/s of each round, as the tables show them."""
    return " / ".join(f"{x:,.0f}" for x in xs)


def met(ok: bool) -> str:
    """Whether a target was reached, in the report's words."""
    return fill("met" if ok else "not_met")


def _flags(machine: dict) -> str:
    """The CPU flags that matter for bf16, each present or not."""
    if "cpu_flags" not in machine:
        return fill("flags_unknown")
    return ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in machine["cpu_flags"].items())


def _peak(results: dict, args: argparse.Namespace) -> str:
    """The load, the float32 and bfloat16 peaks, and what `trainer.precision=auto` picks here."""
    p, plan = peaks(results), results.get("precision")
    bf16 = fill("bf16_peak", peak_bf16=p["bfloat16"]) if "bfloat16" in p else fill("no_bf16_peak")
    return fill(
        "peak",
        load_start=results["load_start"],
        load_end=results["load_end"],
        square="2048" if args.device == "cpu" else "8192",  # bench/peak.py's matrices
        peak_fp32=p["float32"],
        bf16_peak=bf16,
        auto=fill("auto", **plan) if plan else fill("auto_unknown"),
    )


def _head(results: dict, args: argparse.Namespace) -> list[str]:
    """The title, the machine, the load and the peaks; then --batch and BENCH_QUICK=1, where given."""
    m = results["machine"]
    blocks = [
        fill(
            "head",
            command=results["command"],
            date=results["date"],
            duration_min=results["duration_s"] / 60,
            **{**m, "lightning": m.get("lightning", "?"), "flags": _flags(m)},
        )
    ]
    if "gpu" in m:
        blocks.append(fill("gpu", gpu=m["gpu"], cudnn=m.get("cudnn")))
    blocks.append(_peak(results, args))
    if results.get("batch"):
        blocks.append(fill("batch", batch=results["batch"]))
    if args.quick:
        blocks.append(fill("quick"))
    return blocks


def _ppls(c: dict, side: str) -> str:
    """A side's validation perplexity in each round."""
    return " / ".join(f"{x[side]['val_ppl']:.2f}" for x in c["rounds"])


def _cases(cases: list[dict], rounds: int) -> str:
    """The training throughput table (reference and rnnlm fp32), then each case's perplexity in each
    round (of the bf16 side too, where it ran)."""
    rows = [
        fill(
            "case_row",
            **{
                **c,
                "reference_tps": fmt_list(c["reference_tps"]),
                "rnnlm_tps": fmt_list(c["rnnlm_tps"]),
                "met": met(c["ratio_median"] >= c["target"]),
                "reference_peak_pct": 100 * c["reference_peak_frac"],
                "rnnlm_peak_pct": 100 * c["rnnlm_peak_frac"],
                "ppl_diff_pct": 100 * c["ppl_diff"],
            },
        )
        for c in cases
    ]
    seeds = [
        fill(
            "seed_row",
            case=c["case"],
            reference=_ppls(c, "reference"),
            rnnlm=_ppls(c, "rnnlm"),
            bf16=fill("seed_bf16", ppls=_ppls(c, "bf16")) if c.get("bf16") else "",
        )
        for c in cases
    ]
    return fill("cases", rounds=rounds, rows="\n".join(rows), seeds="\n".join(seeds))


def _bf16(cases: list[dict], plan: dict) -> str:
    """The bf16 side of each case, or the line saying why it was not run."""
    if not plan["bf16"]:
        return fill("bf16_not_run", why=plan["bf16_why"])
    rows = [
        fill(
            "bf16_row",
            **{
                **c["bf16"],
                "case": c["case"],
                "tps": fmt_list(c["bf16"]["tps"]),
                "peak_pct": 100 * c["bf16"]["peak_frac"],
                "fp32_ppl": c["rnnlm_val_ppl"],
                "ppl_diff_pct": 100 * c["bf16"]["ppl_diff"],
                "ppl": fill("pass" if ppl_ok(c["bf16"]) else "fail"),
            },
        )
        for c in cases
        if c.get("bf16")
    ]
    return fill("bf16", why=plan["bf16_why"], tol=100 * PPL_TOLERANCE, rows="\n".join(rows))


def _goals(results: dict) -> str:
    """Issue 24's goals, each with its figure and whether it is met."""
    targets = {
        "word_target": WORD_BF16_VS_REFERENCE,
        "char_target": CHAR_BF16_VS_FP32,
        "auto_target": AUTO_VS_FP32,
        "tiny_target": TINY_AUTO_VS_REFERENCE,
        "tol": 100 * PPL_TOLERANCE,
    }
    rows = []
    for g in goals(results):
        if g["status"] in ("met", "not_met"):
            verdict = fill("judged", figure=g["figure"], met=met(g["status"] == "met"))
        else:
            verdict = fill("na", why=g["why"]) if g["status"] == "n/a" else fill("not_measured")
        rows.append(fill("goal_row", goal=fill(g["section"], **targets), verdict=verdict))
    return fill("goals", rows="\n".join(rows))


def _adaptive(a: dict, size_mb: float) -> str:
    return fill(
        "adaptive",
        size_mb=size_mb,
        cutoffs=ADAPTIVE_CUTOFFS,
        full_tps=fmt_list(a["full_tps"]),
        adaptive_tps=fmt_list(a["adaptive_tps"]),
        ratio_median=a["ratio_median"],
        target=ADAPTIVE_TARGET,
        met=met(a["ratio_median"] >= ADAPTIVE_TARGET),
    )


def _tokenize(t: dict) -> str:
    rows = []
    for kind in ("char", "word"):
        f, s = t[kind]["first"], t[kind]["second"]
        rows.append(
            fill(
                "tokenize_row",
                kind=kind,
                tokens=f["tokens"]["train"],
                vocab=f["vocab"],
                first_s=f["data_s"],
                first_mb=f["max_rss_mb"],
                second_s=s["data_s"],
                hashed=fill("hashed", hash_s=s["hash_s"]) if "hash_s" in s else fill("not_hashed"),
                second_mb=s["max_rss_mb"],
            )
        )
    return fill("tokenize", size_mb=t["size_mb"], rows="\n".join(rows))


def report(results: dict, args: argparse.Namespace) -> str:
    """The whole speed section (Markdown) for `results`, as of `args.device`, `args.quick` and
    `args.rounds`; docs/benchmarks.md's section is this, stripped (bench/doc.py)."""
    blocks = _head(results, args)
    if results.get("cases"):
        blocks.append(_cases(results["cases"], args.rounds))
        if "precision" in results:  # a results.json older than the bf16 side has neither
            blocks += [_bf16(results["cases"], results["precision"]), _goals(results)]
    if "adaptive" in results:
        blocks.append(_adaptive(results["adaptive"], results["tokenize"]["size_mb"]))
    if "tokenize" in results:
        blocks.append(_tokenize(results["tokenize"]))
    parts = (("refuse", render_refusals), ("cells", render_cells), ("onnx", render_onnx))
    for key, render_part in parts:
        if key in results and (lines := render_part(results[key])):
            blocks.append("\n".join(lines))
    return "\n".join(blocks)
