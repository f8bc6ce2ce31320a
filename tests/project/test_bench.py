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
    for c in results["cases"]:
        assert c["ratio_median"] > 0 and c["rnnlm_val_ppl"] > 1 and c["reference_val_ppl"] > 1
    assert results["adaptive"]["ratio_median"] > 0
    assert (
        results["tokenize"]["word"]["second"]["data_s"]
        < results["tokenize"]["word"]["first"]["data_s"]
    )
    cells = results["cells"]["train"]["128"]
    assert all(c["ratio"] > 0 and c["params"] > 0 for c in cells.values())
    assert set(results["cells"]["gen"]) == {"gru", *cells}
    table = (tmp_path / "bench" / "benchmarks.md").read_text()
    assert "| case |" in table and "BENCH_QUICK=1" in table
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


def test_ceiling_is_rnnlm_at_its_peak_over_the_reference():
    """The table's ceiling: rnnlm with every FLOP at its own peak, over the reference as measured."""
    import run  # bench/run.py

    case = {"flops_per_token": 1e6, "reference_tps": [900.0, 1000.0, 1100.0], "rnnlm_tps": [1500.0]}
    cpu = {"peak_gflops": 2.0, "cases": [dict(case)]}  # 2e9 FLOP/s; the reference at 1e9: half
    run.set_peak_fractions(cpu)
    c = cpu["cases"][0]
    assert c["reference_peak_frac"] == pytest.approx(0.5)
    assert c["ceiling"] == pytest.approx(2.0) == pytest.approx(1 / c["reference_peak_frac"])
    # On a GPU rnnlm computes in bf16 (peak_gflops) and the reference in fp32: rnnlm's peak counts.
    gpu = {"peak_gflops": 8.0, "peak_gflops_fp32": 2.0, "cases": [dict(case)]}
    run.set_peak_fractions(gpu)
    assert gpu["cases"][0]["reference_peak_frac"] == pytest.approx(0.5)
    assert gpu["cases"][0]["ceiling"] == pytest.approx(8.0)


def test_the_report_is_the_template_filled_in():
    """bench/render.py: the wording from bench/benchmarks.md.tmpl, the figures from the results (here a
    quick GPU run with --batch and every table): Markdown line breaks kept, each part in its place."""
    import argparse

    import render  # bench/render.py

    rounds = [{"reference": {"val_ppl": 150.0}, "rnnlm": {"val_ppl": 151.5}}] * 2
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
    }
    first = {"tokens": {"train": 1234567}, "vocab": 250002, "data_s": 12.34, "max_rss_mb": 1536.0}
    second = {"data_s": 0.5, "max_rss_mb": 600.0}
    machine = {"cpu": "CPU", "cores": 16, "memory_gb": 128.0, "os": "Linux", "python": "3.11.7",
               "torch": "2.9", "torch_threads": 16, "gpu": "H200", "cudnn": 91000}  # fmt: skip
    results = {
        "command": "bash bench/gpu.sh",
        "date": "2026-12-02 20:00",
        "duration_s": 90.0,
        "load_start": "0.10 0.20 0.30",
        "load_end": "1.00 1.00 1.00",
        "machine": machine,
        "peak_dtype": "bfloat16",
        "peak_gflops": 600000.4,
        "peak_gflops_fp32": 50000.0,
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
    assert (
        "Measured bfloat16 matrix-multiply peak: 600000 GFLOP/s (best of repeated 8192-square "
        "products, this run); float32: 50000 GFLOP/s (the reference computes in float32"
    ) in text
    assert "Batch (columns) of every case, both sides: 128." in lines
    assert (
        "| word level | 100 (10) | 10,000 / 12,000 | 18,000 / 18,500 | **1.60x** (>= 1.5x, met) | "
        "5% / 8% | 20.00x | 150.00 / 151.50 (+1.00%) |"
    ) in lines
    assert "- word: reference 150.00 / 150.00; rnnlm 151.50 / 151.50" in lines
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
        "### Large vocabulary: adaptive vs full softmax",
        "### Tokenising a large corpus",
    ]
    assert text.endswith("read once per run.\n") and "{" not in text and "%%" not in text
