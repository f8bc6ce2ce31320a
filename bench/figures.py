"""Figures derived from the measured ones: each row's share of its precision's peak, its ceiling, and the
goals of issue 24 (bf16 on CPUs) judged. Recomputed on every report, so `bench/run.py --render` gives
them for a results.json older than them too.

A row is read against the peak of the precision it computes in: the reference and rnnlm's 32-true path
against the float32 peak, the bf16 side against the bfloat16 peak (on a CPU with AMX that one is an order
of magnitude higher, so the same tokens/s is a far smaller share of it).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from machine import PEAK_KEYS

# Issue 24's goals: on a CPU with AMX, the word-level recipe in bf16 >= 2x the classic loop's float32
# tokens/s at equal-step validation perplexity within 1%, and the char-level GRU in bf16 >= 1.5x its own
# float32 path; on any CPU, no case slower than rnnlm's float32 path (what `trainer.precision=auto`
# picks against 32-true), and the tiny case >= 1x the classic loop.
WORD_BF16_VS_REFERENCE = 2.0
CHAR_BF16_VS_FP32 = 1.5
AUTO_VS_FP32 = 1.0
TINY_AUTO_VS_REFERENCE = 1.0
PPL_TOLERANCE = 0.01  # |bf16 / float32 validation perplexity - 1|


def peaks(results: dict) -> dict[str, float]:
    """The measured matrix-multiply peaks (GFLOP/s) by dtype; also from a results.json older than the
    bf16 side, which held one `peak_gflops` of `peak_dtype`."""
    found = {dtype: results[key] for dtype, key in PEAK_KEYS.items() if results.get(key)}
    if "peak_dtype" in results:
        found.setdefault(results["peak_dtype"], results["peak_gflops"])
    return found


def set_peak_fractions(results: dict) -> None:
    """Each row's model FLOP/s as a fraction of its precision's peak, and its ceiling: that row's side
    at 100% of its peak, over the reference as measured."""
    p = peaks(results)
    fp32 = p["float32"] * 1e9
    for c in results["cases"]:
        fpt = c["flops_per_token"]
        reference_flops = fpt * statistics.median(c["reference_tps"])  # FLOP/s
        c["reference_peak_frac"] = reference_flops / fp32
        c["rnnlm_peak_frac"] = fpt * statistics.median(c["rnnlm_tps"]) / fp32
        c["ceiling"] = fp32 / reference_flops
        bf16 = c.get("bf16")
        if bf16 and "bfloat16" in p:
            bf16["peak_frac"] = fpt * statistics.median(bf16["tps"]) / (p["bfloat16"] * 1e9)
            bf16["ceiling"] = p["bfloat16"] * 1e9 / reference_flops


def ppl_ok(bf16: dict) -> bool:
    """bf16's validation perplexity within PPL_TOLERANCE of the float32 run's after the same steps."""
    return abs(bf16["ppl_diff"]) <= PPL_TOLERANCE


def auto_ratios(results: dict, c: dict) -> tuple[float, float]:
    """What `trainer.precision=auto` gives in case `c`: its tokens/s over the reference's and over
    rnnlm's 32-true path (1 where auto is 32-true: the same path)."""
    if results.get("precision", {}).get("auto") == "bf16-mixed" and c.get("bf16"):
        return c["bf16"]["vs_reference"], c["bf16"]["vs_fp32"]
    return c["ratio_median"], 1.0


def _goal(section: str, why_na: str | None, measured: object, judge: Callable) -> dict:
    """One goal: n/a (`why_na`), not measured (`measured` None: its case was not run) or judged:
    `judge(measured)` gives the figure and whether it is met."""
    if why_na:
        return {"section": section, "status": "n/a", "why": why_na}
    if not measured:
        return {"section": section, "status": "not_measured"}
    figure, ok = judge(measured)
    return {"section": section, "figure": figure, "status": "met" if ok else "not_met"}


def goals(results: dict) -> list[dict]:
    """Issue 24's goals, each {section: its wording in the template, status: met, not_met, n/a (with
    `why`) or not_measured, figure where judged}."""
    cases = {c["case"]: c for c in results.get("cases", [])}
    cpu = results.get("device") == "cpu"
    amx = cpu and results["machine"].get("cpu_flags", {}).get("amx_bf16", False)
    amx_na = None if amx else ("this CPU has no AMX" if cpu else "a CPU goal")
    cpu_na = None if cpu else "a CPU goal"

    def word(b: dict) -> tuple[str, bool]:
        figure = f"{b['vs_reference']:.2f}x, val ppl {100 * b['ppl_diff']:+.2f}%"
        return figure, b["vs_reference"] >= WORD_BF16_VS_REFERENCE and ppl_ok(b)

    def char(b: dict) -> tuple[str, bool]:
        return f"{b['vs_fp32']:.2f}x", b["vs_fp32"] >= CHAR_BF16_VS_FP32

    def auto(cs: dict) -> tuple[str, bool]:
        vs_fp32 = {name: auto_ratios(results, c)[1] for name, c in cs.items()}
        figure = ", ".join(f"{name} {r:.2f}x" for name, r in vs_fp32.items())
        return figure, min(vs_fp32.values()) >= AUTO_VS_FP32

    def tiny(c: dict) -> tuple[str, bool]:
        r = auto_ratios(results, c)[0]
        return f"{r:.2f}x", r >= TINY_AUTO_VS_REFERENCE

    return [
        _goal("goal_word", amx_na, (cases.get("word") or {}).get("bf16"), word),
        _goal("goal_char", amx_na, (cases.get("char") or {}).get("bf16"), char),
        _goal("goal_auto", cpu_na, cases, auto),
        _goal("goal_tiny", cpu_na, cases.get("tiny"), tiny),
    ]
