"""The benchmark: the reference loop, rnnlm's same maths, and `BENCH_QUICK=1 make bench` (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import reference  # noqa: E402
from corpus import zipf_corpus  # noqa: E402

from rnnlm.models import RNNLM, detach_hidden  # noqa: E402
from rnnlm.training import precision  # noqa: E402
from rnnlm.training.precision import cpu_bf16_units  # noqa: E402


def _reference_and_rnnlm(cell: str, vocab: int = 40, sparse: bool = True):
    torch.manual_seed(0)
    ref = reference.RNNModel(cell.upper(), vocab, 12, 10, 2, dropout=0.0)
    ours = RNNLM(vocab, cell=cell, embedding_dim=12, hidden_dim=10, num_layers=2, dropout=0.0,
                 sparse_embedding=sparse)  # fmt: skip
    state = {k.replace("encoder.", "embedding."): v for k, v in ref.state_dict().items()}
    ours.load_state_dict(state)
    return ref, ours


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("sparse", [True, False])
def test_rnnlm_does_the_reference_maths(cell, sparse):
    """Three steps of the classic loop (log_softmax + NLLLoss, clip 0.25, p -= 20 * grad, hidden carried)
    and of rnnlm's path (fused loss, clip_grad_norm_, foreach SGD) give the same weights."""
    ref, ours = _reference_and_rnnlm(cell, sparse=sparse)
    opt = torch.optim.SGD(ours.parameters(), lr=20.0, foreach=True)
    stream = torch.randint(0, 40, (5 * 3 * 7 + 1,))
    data = reference.batchify(stream, 5, "cpu")  # (N, B) as in the example
    h_ref, h_ours = ref.init_hidden(5), None
    criterion = torch.nn.NLLLoss()
    for i in range(0, 3 * 7, 7):
        x, y = reference.get_batch(data, i, 7)
        ref.zero_grad()
        h_ref = reference.repackage_hidden(h_ref)
        out, h_ref = ref(x, h_ref)
        loss_ref = criterion(out, y)
        loss_ref.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.25)
        for p in ref.parameters():
            p.data.add_(p.grad, alpha=-20.0)

        xb, yb = x.t(), data[i + 1 : i + 8].t()  # rnnlm's (B, T) windows
        loss, h_ours = ours.nll(xb, yb, h_ours, reduction="mean")
        h_ours = detach_hidden(h_ours)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 0.25)
        opt.step()
        torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    ref_state = {k.replace("encoder.", "embedding."): v for k, v in ref.state_dict().items()}
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(v, ref_state[k], rtol=1e-4, atol=1e-5, msg=k)


def test_reference_script_runs(tmp_path):
    corpus = zipf_corpus(tmp_path / "zipf", vocab_size=300, train_mb=0.05, eval_mb=0.01)
    out = tmp_path / "ref.json"
    reference.main(
        ["--config", "word", "--data", str(corpus), "--steps", "4", "--warmup", "1", "--eval",
         "--eval-windows", "2", "--json", str(out)]
    )  # fmt: skip
    r = json.loads(out.read_text())
    assert r["steps"] == 4 and r["timed_steps"] == 3 and r["tokens_per_sec"] > 0
    assert r["vocab_size"] == 301  # every word of the Zipf vocabulary and <eos> (no <unk> in it)
    assert r["val_ppl"] > 1


def test_rnn_precision_measures_each_cell_and_states_the_rule(tmp_path):
    """bench/rnn_precision.py --quick: a row per cell and width, each with both speeds, the errors
    against float64 and the precision rnnlm runs that layer in under autocast (BF16_MIN_WIDTH)."""
    from rnnlm.models.classic import BF16_MIN_WIDTH

    out = tmp_path / "rnn.json"
    done = subprocess.run(
        [sys.executable, "bench/rnn_precision.py", "--quick", "--out", str(out)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(r["cell"], r["width"]) for r in rows} == {
        (c, w) for c in ("rnn", "lstm", "gru") for w in (64, 128)
    }
    for r in rows:
        assert r["fp32_tokens_per_sec"] > 0 and r["bf16_tokens_per_sec"] > 0
        assert r["fp32_out_err"] < 1e-5 < r["bf16_out_err"] < 2e-2  # bf16 keeps 8 bits
        assert r["rule"] == ("bf16" if r["width"] >= BF16_MIN_WIDTH[r["cell"]] else "fp32")
    assert "| lstm | 128 |" in done.stdout


def test_zipf_corpus_has_the_whole_vocabulary(tmp_path):
    from rnnlm.data.tokenizers import WordTokenizer

    folder = zipf_corpus(tmp_path / "z", vocab_size=500, train_mb=0.02, eval_mb=0.005)
    tok = WordTokenizer.train((folder / "train.txt").read_text())
    assert tok.vocab_size == 502
    assert zipf_corpus(folder, vocab_size=500, train_mb=0.02, eval_mb=0.005) == folder  # reused


@pytest.mark.slow
def test_bench_quick(tmp_path):
    """`BENCH_QUICK=1 make bench`, as the harness itself (the Makefile target only adds `make install`)."""
    env = {**os.environ, "BENCH_QUICK": "1", "BENCH_OUT": str(tmp_path / "bench")}
    env.pop("RNNLM_DATA_DIR", None)
    proc = subprocess.run(
        [sys.executable, "bench/run.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert {c["case"] for c in results["cases"]} == {"word", "char", "tiny"}
    bf16 = bool(cpu_bf16_units())
    assert results["precision"]["bf16"] == bf16 and results["machine"]["cpu_flags"]
    assert ("peak_gflops_bf16" in results) == bf16 and results["peak_gflops_fp32"] > 0
    for c in results["cases"]:
        assert c["ratio_median"] > 0 and c["rnnlm_val_ppl"] > 1 and c["reference_val_ppl"] > 1
        if bf16:  # the bf16 side: tokens/s and validation perplexity of each round, and its figures
            assert all(
                r["bf16"]["tokens_per_sec"] > 0 and r["bf16"]["val_ppl"] > 1 for r in c["rounds"]
            )
            assert c["bf16"]["vs_reference"] > 0 and c["bf16"]["vs_fp32"] > 0
            assert 0 < c["bf16"]["peak_frac"] < 1
        else:
            assert c["bf16"] is None and "bf16" not in c["rounds"][0]
    assert results["adaptive"]["ratio_median"] > 0
    assert (
        results["tokenize"]["word"]["second"]["data_s"]
        < results["tokenize"]["word"]["first"]["data_s"]
    )
    cells = results["cells"]["train"]["32-true"]["128"]
    assert all(c["ratio"] > 0 and c["params"] > 0 for c in cells.values())
    assert set(results["cells"]["gen"]) == {"gru", *cells}
    table = (tmp_path / "bench" / "benchmarks.md").read_text()
    assert "| case |" in table and "BENCH_QUICK=1" in table
    assert "### Goals for bf16 (issue 24)" in table
    if bf16:
        assert "| case | rnnlm bf16 tokens/s |" in table
    else:
        assert "bf16: not run (this CPU has neither AMX nor AVX-512 BF16)." in table
    assert "Parallel cells against nn.GRU" in table
    assert all(r["same_text"] and r["onnx_tps"] > 0 for r in results["onnx"].values())
    assert "Generation with ONNX Runtime" in table


def test_each_benchmark_rewrites_only_its_own_section_of_the_doc(tmp_path):
    from doc import write_section

    doc = tmp_path / "benchmarks.md"
    write_section(doc, "bench", "speed v1")
    write_section(doc, "bench-quality", "quality v1")
    write_section(doc, "bench", "speed v2")
    text = doc.read_text()
    assert text.startswith("# Benchmarks")
    assert "speed v2" in text and "speed v1" not in text and "quality v1" in text
    assert text.index("speed v2") < text.index("quality v1")


def test_each_row_is_read_against_its_own_precisions_peak():
    """The share of peak and the ceiling of the reference and rnnlm fp32 rows come from the float32
    peak, the bf16 row's from the bfloat16 peak; a results.json older than bf16 has one float32 peak."""
    import run  # bench/run.py

    case = {"flops_per_token": 1e6, "reference_tps": [900.0, 1000.0, 1100.0], "rnnlm_tps": [1500.0]}
    cpu = {"peak_gflops_fp32": 2.0, "cases": [dict(case)]}  # 2e9 FLOP/s; the reference at 1e9: half
    run.set_peak_fractions(cpu)
    c = cpu["cases"][0]
    assert c["reference_peak_frac"] == pytest.approx(0.5)
    assert c["rnnlm_peak_frac"] == pytest.approx(0.75)
    assert c["ceiling"] == pytest.approx(2.0) == pytest.approx(1 / c["reference_peak_frac"])
    both = {"peak_gflops_fp32": 2.0, "peak_gflops_bf16": 8.0,
            "cases": [{**case, "bf16": {"tps": [3000.0, 4000.0, 5000.0]}}]}  # fmt: skip
    run.set_peak_fractions(both)
    c = both["cases"][0]
    assert c["ceiling"] == pytest.approx(2.0) and c["rnnlm_peak_frac"] == pytest.approx(0.75)
    assert c["bf16"]["peak_frac"] == pytest.approx(0.5) and c["bf16"]["ceiling"] == pytest.approx(
        8.0
    )
    old = {"peak_dtype": "float32", "peak_gflops": 2.0, "cases": [dict(case)]}
    run.set_peak_fractions(old)
    assert old["cases"][0]["ceiling"] == pytest.approx(2.0)


BF16_CPUS = {
    "amx": {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"},
    "avx512_bf16": {"avx512_bf16", "avx512f", "avx2"},
    "none": {"avx512f", "avx2"},
}


@pytest.mark.parametrize("cpu", sorted(BF16_CPUS))
def test_the_bf16_side_runs_where_the_cpu_computes_bf16(cpu, tmp_path, monkeypatch):
    """bench_case runs rnnlm with bf16-mixed beside 32-true only on a CPU with AMX or AVX-512 BF16 (the
    sides faked here: the CPU flags and what each side measures); the report gives its figures or says
    why it did not run, records the flags and judges issue 24's goals (those of AMX only with AMX)."""
    import argparse

    import cases  # bench/cases.py
    import machine
    import render
    from figures import set_peak_fractions

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(BF16_CPUS[cpu]))
    plan = machine.precision_plan("cpu")
    bf16 = cpu != "none"
    assert plan["bf16"] == bf16 and plan["auto"] == ("bf16-mixed" if bf16 else "32-true")
    corpus = zipf_corpus(tmp_path / "zipf", vocab_size=300, train_mb=0.05, eval_mb=0.01)
    sides = []

    def rnnlm(case, args, data, seed, tag, side="rnnlm"):
        sides.append(side)
        return {"tokens_per_sec": {"rnnlm": 1500.0, "bf16": 3300.0}[side],
                "val_ppl": {"rnnlm": 100.0, "bf16": 100.5}[side]}  # fmt: skip

    monkeypatch.setattr(cases, "corpus_dir", lambda name, work, quick: corpus)
    monkeypatch.setattr(cases, "run_rnnlm", rnnlm)
    monkeypatch.setattr(
        cases, "run_reference", lambda *a: {"tokens_per_sec": 1000.0, "val_ppl": 99.0, "vocab": 301}
    )
    args = argparse.Namespace(batch=0, device="cpu", quick=True, rounds=2, work=tmp_path, bf16=bf16)
    results = {
        "command": "BENCH_QUICK=1 make bench", "date": "2026-12-07 12:00", "duration_s": 60.0,
        "load_start": "0", "load_end": "0", "device": "cpu", "machine": machine.describe("cpu"),
        "precision": plan, "peak_gflops_fp32": 50.0, **({"peak_gflops_bf16": 500.0} if bf16 else {}),
        "cases": [cases.bench_case(cases.CASES[name], args) for name in ("word", "char", "tiny")],
    }  # fmt: skip
    assert sides == (["rnnlm", "bf16"] if bf16 else ["rnnlm"]) * 6
    set_peak_fractions(results)
    lines = render.report(results, args).split("\n")
    flags = ", ".join(f"{f} {'yes' if f in BF16_CPUS[cpu] else 'no'}" for f in machine.CPU_FLAGS)
    assert f"CPU flags (bf16 units, vector widths): {flags}  " in lines
    goals = [line for line in lines if line.startswith("- ") and ":" in line and "(on " in line]
    assert len(goals) == 4
    if not bf16:
        assert all(c["bf16"] is None for c in results["cases"])
        assert "bf16: not run (this CPU has neither AMX nor AVX-512 BF16)." in lines
        assert "; bfloat16 not measured (the bf16 side did not run)" in "\n".join(lines)
        assert goals[0].endswith("n/a (this CPU has no AMX)")
        assert goals[2].endswith("**word 1.00x, char 1.00x, tiny 1.00x** (met)")
        assert goals[3].endswith("**1.50x** (met)")  # auto is 32-true: rnnlm fp32 / reference
        return
    for c in results["cases"]:
        assert c["bf16"]["tps"] == [3300.0, 3300.0] and c["bf16"]["val_ppl"] == 100.5
        assert c["bf16"]["vs_reference"] == pytest.approx(3.3)
        assert c["bf16"]["vs_fp32"] == pytest.approx(2.2)
        assert c["bf16"]["ppl_diff"] == pytest.approx(0.005)
    row = next(line for line in lines if line.startswith("| word | 3,300 / 3,300 |"))
    assert "| **3.30x** | **2.20x** |" in row and row.endswith("| 100.00 / 100.50 (+0.50%, pass) |")
    if cpu == "amx":
        assert goals[0].endswith("**3.30x, val ppl +0.50%** (met)")
        assert goals[1].endswith("**2.20x** (met)")
    else:
        assert goals[0].endswith("n/a (this CPU has no AMX)")
    assert goals[2].endswith("**word 2.20x, char 2.20x, tiny 2.20x** (met)")
    assert goals[3].endswith("**3.30x** (met)")


def test_the_report_is_the_template_filled_in():
    """bench/render.py: the wording from bench/benchmarks.md.tmpl, the figures from the results (here a
    quick GPU run with --batch and every table): Markdown line breaks kept, each part in its place."""
    import argparse

    import render  # bench/render.py

    rounds = [{"reference": {"val_ppl": 150.0}, "rnnlm": {"val_ppl": 151.5},
               "bf16": {"val_ppl": 153.5}}] * 2  # fmt: skip
    bf16 = {"tps": [40000.0, 41000.0], "vs_reference": 3.6, "vs_fp32": 2.2, "val_ppl": 153.5,
            "ppl_diff": 0.0132, "peak_frac": 0.0123, "ceiling": 240.0}  # fmt: skip
    case = {
        "case": "word",
        "title": "word level",
        "steps": 100,
        "warmup": 10,
        "rounds": rounds,
        "reference_tps": [10000.0, 12000.0],
        "rnnlm_tps": [18000.0, 18500.4],
        "ratio_median": 1.6,
        "target": 1.5,
        "reference_peak_frac": 0.05,
        "rnnlm_peak_frac": 0.081,
        "ceiling": 20.0,
        "reference_val_ppl": 150.0,
        "rnnlm_val_ppl": 151.5,
        "ppl_diff": 0.01,
        "bf16": bf16,
    }
    first = {"tokens": {"train": 1234567}, "vocab": 250002, "data_s": 12.34, "max_rss_mb": 1536.0}
    second = {"data_s": 0.5, "max_rss_mb": 600.0}
    machine = {"cpu": "CPU", "cores": 16, "memory_gb": 128.0, "os": "Linux", "python": "3.11.7",
               "torch": "2.9", "torch_threads": 16, "gpu": "H200", "cudnn": 91000,
               "cpu_flags": {"amx_bf16": False, "avx512f": True, "avx2": True}}  # fmt: skip
    results = {
        "command": "bash bench/gpu.sh",
        "date": "2026-12-02 20:00",
        "duration_s": 90.0,
        "load_start": "0.10 0.20 0.30",
        "load_end": "1.00 1.00 1.00",
        "device": "cuda",
        "machine": machine,
        "peak_gflops_bf16": 600000.4,
        "peak_gflops_fp32": 50000.0,
        "precision": {
            "bf16": True,
            "bf16_why": "H200",
            "auto": "bf16-mixed",
            "auto_reason": "auto: H200 computes bf16",
        },  # fmt: skip
        "batch": 128,
        "cases": [case],
        "adaptive": {"full_tps": [1000.0], "adaptive_tps": [3500.0], "ratio_median": 3.5},
        "tokenize": {
            "size_mb": 100.2,
            "char": {"first": first, "second": {**second, "hash_s": 0.25}},
            "word": {"first": first, "second": second},  # a results.json older than hash_s
        },
    }
    text = render.report(results, argparse.Namespace(device="cuda", quick=True, rounds=2))
    lines = text.split("\n")
    assert "Command: `bash bench/gpu.sh`  " in lines and "GPU: H200, cuDNN 91000  " in lines
    assert "Date: 2026-12-02 20:00, duration 1.5 min  " in lines
    assert "CPU flags (bf16 units, vector widths): amx_bf16 no, avx512f yes, avx2 yes  " in lines
    assert (
        "Measured matrix-multiply peaks (best of repeated 8192-square products, this run): float32 "
        "50000 GFLOP/s; bfloat16 600000 GFLOP/s (each row's share of peak is of its own precision's)  "
    ) in lines
    assert (
        "`trainer.precision=auto` (rnnlm's default) picks bf16-mixed here (auto: H200 computes bf16)."
    ) in lines
    assert "Batch (columns) of every case, both sides: 128." in lines
    assert (
        "| word level | 100 (10) | 10,000 / 12,000 | 18,000 / 18,500 | **1.60x** (>= 1.5x, met) | "
        "5% / 8% | 20.00x | 150.00 / 151.50 (+1.00%) |"
    ) in lines
    assert (
        "- word: reference 150.00 / 150.00; rnnlm fp32 151.50 / 151.50; rnnlm bf16 153.50 / 153.50"
        in lines
    )
    assert (
        "| word | 40,000 / 41,000 | **3.60x** | **2.20x** | 1.2% | 240.00x | "
        "151.50 / 153.50 (+1.32%, FAIL) |"
    ) in lines
    assert "bf16: run on H200. The third side of each round above" in text
    goals = text.split("### Goals for bf16 (issue 24)")[1].split("###")[0]
    assert goals.count("n/a (a CPU goal)") == 4  # issue 24's goals are for CPUs
    assert "Adaptive / full: **3.5x** (median of rounds; target >= 3x, met)." in lines
    assert "| char | 1,234,567 | 250,002 | 12.3 s | 1,536 MB | 0.50 s | 0.25 s | 600 MB |" in lines
    assert (
        "| word | 1,234,567 | 250,002 | 12.3 s | 1,536 MB | 0.50 s | not measured | 600 MB |"
        in lines
    )
    assert [line for line in lines if line.startswith("#") or line.startswith("**BENCH")] == [
        "## Speed (`make bench`)",
        "**BENCH_QUICK=1: a check that the benchmark runs; these figures mean nothing.**",
        "### Training throughput (steady state)",
        "### bf16 mixed precision (`trainer.precision=bf16-mixed`)",
        "### Goals for bf16 (issue 24)",
        "### Large vocabulary: adaptive vs full softmax",
        "### Tokenising a large corpus",
    ]
    assert text.endswith("read once per run.\n") and "{" not in text and "%%" not in text
