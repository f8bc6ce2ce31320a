"""Translation quality in a time budget (part of `make bench-quality`): Tatoeba English -> French.

- The anchor: the PyTorch seq2seq tutorial's model (bench/seq2seq_reference.py: GRU encoder, attention
  decoder, hidden 128, its filtered subset of short sentences) trained for `--minutes`.
- rnnlm, each for the same wall time on the full training split: the attention encoder-decoder
  (`experiment=translate_attn`), the conditional LM (`experiment=translate_lm`), the Transformer
  (`experiment=translate_transformer`), and the attention model from French to English.
- Scores: BLEU and chrF (sacreBLEU, every reference of a source) on the full test split (beam 5, from
  result.json) and on the tutorial's filtered test subset, compared in the tutorial's normalised form
  (seq2seq_reference.score) so that its lowercase ASCII output is not penalised. Beam search against
  greedy decoding (BLEU and sentences/s) for the attention model.
Goals: the best recurrent encoder-decoder >= the reference's BLEU + 5 on the subset, BLEU >= 30 on the
full test split. The runs go one after the other (reference first, then rnnlm's, alternating
directions). Writes its own section of docs/benchmarks.md (`--out`); `--quick` runs a few seconds each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

import seq2seq_reference as ref  # noqa: E402
from doc import write_section  # noqa: E402
from machine import describe  # noqa: E402

SHARED = Path(os.environ.get("BENCH_DATA", ROOT.parent / "shared" / "data"))
# (key, what, overrides): rnnlm's cases, in the order they run
CASES = [
    (
        "attn",
        "attention encoder-decoder (experiment=translate_attn)",
        ["experiment=translate_attn"],
    ),
    ("lm", "conditional LM (experiment=translate_lm)", ["experiment=translate_lm"]),
    (
        "transformer",
        "Transformer (experiment=translate_transformer)",
        ["experiment=translate_transformer"],
    ),
    (
        "attn-fr-en",
        "attention encoder-decoder, fr->en",
        ["experiment=translate_attn", "data.direction=fr-en"],
    ),
]


def train(overrides: list[str], data: Path, minutes: float, run_dir: Path, quick: bool) -> dict:
    """One rnnlm run in the budget; its result.json."""
    budget = time.strftime("%H:%M:%S", time.gmtime(max(1, round(minutes * 60))))
    cmd = [
        sys.executable,
        "src/train.py",
        *overrides,
        f"data.path={data}",
        f"trainer.max_time=00:{budget}",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        "~callbacks.progress_bar",
    ]
    if quick:
        cmd += [
            "trainer.limit_train_batches=3",
            "trainer.max_epochs=1",
            "decode.val_sentences=8",
            "trainer.limit_test_batches=2",
            "callbacks.time_budget.enabled=false",
        ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    result = run_dir / "result.json"
    if proc.returncode != 0 or not result.is_file():
        raise RuntimeError(f"{' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text())


def subset_scores(translator: Any, data: Path, direction: str, quick: bool) -> dict:
    """BLEU/chrF of a model on the tutorial's filtered test subset, in its normalised form."""
    refs = ref.references_by_source(
        ref.tutorial_subset(ref.read_pairs(data / "test.tsv"), direction)
    )
    if quick:
        refs = refs[:8]
    hyps = translator.translate([s for s, _ in refs], beam_size=5)
    return ref.score(hyps, [t for _, t in refs])


def beam_vs_greedy(translator: Any, data: Path, direction: str, quick: bool) -> list[dict]:
    """BLEU and sentences/s of the full test split, greedy and with a beam of 5."""
    from rnnlm.inference.bleu import corpus_scores

    pairs = ref.read_pairs(data / "test.tsv")
    if direction == "fr-en":
        pairs = [(f, e) for e, f in pairs]
    refs = ref.references_by_source(pairs)[: 8 if quick else None]
    rows = []
    for beam in (1, 5):
        t0 = time.perf_counter()
        hyps = translator.translate([s for s, _ in refs], beam_size=beam)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "beam": beam,
                **corpus_scores(hyps, [t for _, t in refs]),
                "sentences_per_sec": len(refs) / seconds,
            }
        )
    return rows


def reference_run(data: Path, direction: str, minutes: float, out: Path) -> dict:
    cmd = [
        sys.executable,
        "bench/seq2seq_reference.py",
        "--direction",
        direction,
        "--minutes",
        str(minutes),
        "--data",
        str(data),
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"the reference failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def machine_line() -> str:
    m = describe("cpu")
    flags = [f for f, on in m["cpu_flags"].items() if on]
    return f"{m['cpu']} ({m['cores']} cores{', ' + ', '.join(flags) if flags else ''}), torch {m['torch']}"


def table(rows: list[dict]) -> str:
    lines = [
        "| model | direction | minutes | BLEU test (beam 5) | chrF test | BLEU tutorial subset | "
        "chrF subset | best val BLEU (greedy) | epochs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(v: object) -> str:
        if isinstance(v, int):
            return str(v)
        return f"{v:.2f}" if isinstance(v, float) and math.isfinite(v) else "-"

    for r in rows:
        lines.append(
            f"| {r['what']} | {r['direction']} | {r['minutes']:.1f} | {f(r.get('test_bleu'))} | "
            f"{f(r.get('test_chrf'))} | {f(r.get('subset_bleu'))} | {f(r.get('subset_chrf'))} | "
            f"{f(r.get('best_val_bleu'))} | {f(r.get('epochs'))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument(
        "--other-minutes",
        type=float,
        default=None,
        help="budget of the conditional LM, the Transformer and fr->en (default: --minutes)",
    )
    ap.add_argument("--data", type=Path, default=SHARED / "tatoeba-eng-fra")
    ap.add_argument(
        "--only", default=None, help="comma-separated: reference,attn,lm,transformer,attn-fr-en"
    )
    ap.add_argument("--quick", action="store_true", help="a few steps per case (tests)")
    ap.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench-translation")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    minutes = 0.05 if args.quick else args.minutes
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.work / stamp
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    if only is None or "reference" in only:
        r = reference_run(args.data, "en-fr", minutes, work / "reference.json")
        rows.append(
            {
                "what": "PyTorch tutorial seq2seq (reference)",
                "direction": "en-fr",
                "minutes": minutes,
                "subset_bleu": r["bleu"],
                "subset_chrf": r["chrf"],
                "epochs": r["epochs"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    beam_rows: list[dict] = []
    for key, what, overrides in CASES:
        if only is not None and key not in only:
            continue
        direction = "fr-en" if "data.direction=fr-en" in overrides else "en-fr"
        run_dir = work / key
        budget = minutes if key == "attn" or args.quick else (args.other_minutes or minutes)
        row = {"key": key, "what": what, "direction": direction, "minutes": budget}
        try:  # a failed case is a row that says so; the others still run
            result = train(overrides, args.data, budget, run_dir, args.quick)
            keys = ("test_bleu", "test_chrf", "best_val_bleu", "epochs", "steady_tokens_per_sec")
            row.update({k: result.get(k) for k in keys})
            from rnnlm.inference.translator import Translator

            translator = Translator.load(run_dir / "checkpoints" / "best.ckpt")
            sub = subset_scores(translator, args.data, direction, args.quick)
            row.update(subset_bleu=sub["bleu"], subset_chrf=sub["chrf"])
            if key == "attn":
                beam_rows = beam_vs_greedy(translator, args.data, direction, args.quick)
        except Exception as err:  # noqa: BLE001
            row["what"] += f" (failed: {str(err).strip().splitlines()[0][:200]})"
        rows.append(row)
        print(json.dumps(row), flush=True)
        (work / "rows.json").write_text(json.dumps({"rows": rows, "beam": beam_rows}, indent=1))
    body = [
        "## Translation: Tatoeba English -> French in a time budget",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_line()}, one run after the other:",
        "`python bench/translation.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "`",
        "",
        table(rows),
    ]
    if beam_rows:
        body += [
            "",
            "Beam search against greedy (attention model, full test split):",
            "",
            "| beam | BLEU | chrF | sentences/s |",
            "|---:|---:|---:|---:|",
        ]
        body += [
            f"| {b['beam']} | {b['bleu']:.2f} | {b['chrf']:.2f} | {b['sentences_per_sec']:.1f} |"
            for b in beam_rows
        ]
    if not args.quick:
        write_section(args.out, "bench-translation", "\n".join(body))
    print("\n".join(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
