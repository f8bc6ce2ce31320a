"""Generation speed of an exported ONNX graph in ONNX Runtime against PyTorch eager, on the CPU.

The char-level model `make train` trains (a 1 x 256 GRU over 81 characters) and the same model as an
LSTM, random weights: speed does not depend on them. Both sides generate the same greedy text, one
token per call at batch 1 (the loop `LanguageModel.generate` and `OnnxLM.generate` run), with the
same thread count; rounds alternate between the two sides and the median is reported.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def bench_onnx(quick: bool, log: callable) -> dict:  # type: ignore[valid-type]
    import torch

    from rnnlm.data.tokenizers import train_tokenizer
    from rnnlm.export.onnx import export_onnx
    from rnnlm.export.onnx_runtime import OnnxLM
    from rnnlm.inference.lm import LanguageModel
    from rnnlm.models import RNNLM

    tok = train_tokenizer("char", "".join(chr(c) for c in range(32, 113)) + "\n")
    tokens, rounds = (100, 2) if quick else (500, 5)
    threads = torch.get_num_threads()
    rows = {}
    for cell in ("gru", "lstm"):
        torch.manual_seed(0)
        cfg = {"embedding_dim": 64, "hidden_dim": 256, "num_layers": 1, "cell": cell}
        model = RNNLM(vocab_size=tok.vocab_size, **cfg).eval()
        lm = LanguageModel(model, tok, model_config={"_target_": "rnnlm.models.RNNLM", **cfg})
        with tempfile.TemporaryDirectory() as tmp:
            onnx_lm = OnnxLM(export_onnx(lm, Path(tmp) / "m.onnx")["path"], threads=threads)
            same = onnx_lm.generate("a", tokens, temperature=0) == lm.generate(
                "a", tokens, temperature=0
            )
            speed: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
            for _ in range(rounds):
                for side, run in (("pytorch", lm), ("onnxruntime", onnx_lm)):
                    t0 = time.perf_counter()
                    run.generate("a", tokens, temperature=0)
                    speed[side].append(tokens / (time.perf_counter() - t0))
        med = {k: statistics.median(v) for k, v in speed.items()}
        rows[cell] = {
            "params": sum(p.numel() for p in model.parameters()),
            "tokens": tokens,
            "threads": threads,
            "pytorch_tps": med["pytorch"],
            "onnx_tps": med["onnxruntime"],
            "ratio": med["onnxruntime"] / med["pytorch"],
            "same_text": same,
            "rounds": speed,
        }
        log(
            f"  {cell}: ONNX Runtime {med['onnxruntime']:.0f} tokens/s, PyTorch {med['pytorch']:.0f}"
        )
    return rows


def render_onnx(rows: dict) -> list[str]:
    lines = [
        "### Generation with ONNX Runtime",
        "",
        "Greedy generation at batch 1, one token per call, of a 1 x 256 char-level model (81 symbols), "
        "exported with `rnnlm-export onnx`, against PyTorch eager in the same process and thread count "
        "(bench/onnx_gen.py; median of alternating rounds).",
        "",
        "| cell | parameters | PyTorch tokens/s | ONNX Runtime tokens/s | ratio | same text |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for cell, r in rows.items():
        lines.append(
            f"| {cell} | {r['params']:,} | {r['pytorch_tps']:,.0f} | {r['onnx_tps']:,.0f} | "
            f"{r['ratio']:.2f}x | {'yes' if r['same_text'] else 'no'} |"
        )
    lines.append("")
    return lines
