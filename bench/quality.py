"""Quality benchmark (`make bench-quality`): what rnnlm reaches in a fixed training-time budget.

- Word level, `../shared/data/wikitext-2-mini`, 15 minutes each: the classic recipe
  (`experiment=pytorch_example`) against rnnlm's budget recipe (`experiment=wt2_budget`).
  Target: rnnlm's validation perplexity <= 0.8 x the classic recipe's.
- Character level, `../shared/data/tinyshakespeare`, 20 minutes: `experiment=tinyshakespeare_char`.
  Target: validation loss <= 1.40 nats per character.

Each configuration first runs a few steps to measure its throughput on this machine, then trains for the
steps that fit in its budget (so cosine schedules end with the budget; `trainer.max_time` caps the wall
time as well). Prints a table and writes it into its own section of `docs/benchmarks.md` (`--out`).
`--quick` runs every configuration for a few seconds (for tests and smoke checks; pass small corpora).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from doc import write_section  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
VALIDATIONS = 10  # validations per budgeted run


@dataclass
class Case:
    name: str
    level: str  # word | char
    overrides: list[str]
    minutes: float
    tokens_per_step: int  # batch_size * bptt, to turn a time budget into steps


def cases(word_data: Path, char_data: Path, word_min: float, char_min: float) -> list[Case]:
    word = ["data=text_files", f"data.path={word_data}", "data.tokenizer=word"]
    char = ["data=text_files", f"data.path={char_data}", "data.tokenizer=char"]
    return [
        Case(
            "classic (experiment=pytorch_example)",
            "word",
            ["experiment=pytorch_example", *word],
            word_min,
            20 * 35,
        ),
        Case(
            "rnnlm (experiment=wt2_budget)",
            "word",
            ["experiment=wt2_budget", *word],
            word_min,
            20 * 70,
        ),
        Case(
            "rnnlm (experiment=tinyshakespeare_char)",
            "char",
            ["experiment=tinyshakespeare_char", *char],
            char_min,
            64 * 128,
        ),
    ]


def _train(overrides: list[str], run_dir: Path, timeout: float) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "src/train.py",
        *overrides,
        "callbacks=none",
        "logger=csv",
        "test=false",
        "trainer.max_epochs=-1",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    result_file = run_dir / "result.json"
    if proc.returncode != 0 or not result_file.is_file():
        raise RuntimeError(f"{' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(result_file.read_text())


def measure(case: Case, work: Path, probe_steps: int, limit_val: bool) -> dict:
    """Throughput probe, then the budgeted run; returns the row of the table."""
    val_cap = ["+trainer.limit_val_batches=2"] if limit_val else []
    probe = _train(
        [*case.overrides, f"+trainer.max_steps={probe_steps}", "+trainer.limit_val_batches=0"],
        work / f"{case.level}-{len(case.name)}-probe",
        timeout=600,
    )
    tok_s = probe.get("tokens_per_sec") or 0.0
    budget_s = case.minutes * 60
    steps = max(VALIDATIONS, int(budget_s * tok_s / case.tokens_per_step)) if tok_s else 10**6
    # Validate VALIDATIONS times, every `every` steps across epochs, the last one at the last step
    # (validating only at epoch ends would waste the last partial epoch's training).
    every = steps // VALIDATIONS
    steps = every * VALIDATIONS
    h, rem = divmod(int(math.ceil(budget_s)), 3600)
    m, s = divmod(rem, 60)
    t0 = time.perf_counter()
    result = _train(
        [
            *case.overrides,
            f"+trainer.max_steps={steps}",
            f"+trainer.max_time=00:{h:02d}:{m:02d}:{s:02d}",
            f"trainer.val_check_interval={every}",
            "trainer.check_val_every_n_epoch=null",
            *val_cap,
        ],
        work / f"{case.level}-{len(case.name)}",
        timeout=budget_s * 3 + 600,
    )
    ppl = result.get("best_val_ppl")
    return {
        "name": case.name,
        "level": case.level,
        "budget_min": case.minutes,
        "wall_s": time.perf_counter() - t0,
        "tokens": result.get("tokens_seen"),
        "epochs": result.get("epochs"),
        "val_ppl": ppl,
        "val_loss": math.log(ppl) if ppl else None,
    }


def table(rows: list[dict], quick: bool) -> str:
    lines = [
        "| configuration | level | budget | wall time | tokens seen | epochs | val perplexity | val loss (nats) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ppl = f"{r['val_ppl']:.2f}" if r["val_ppl"] else "n/a"
        loss = f"{r['val_loss']:.4f}" if r["val_loss"] is not None else "n/a"
        lines.append(
            f"| {r['name']} | {r['level']} | {r['budget_min']:g} min | {r['wall_s']:.0f} s | "
            f"{r['tokens'] or 0:,} | {r['epochs']} | {ppl} | {loss} |"
        )
    word = {r["name"].split(" ")[0]: r for r in rows if r["level"] == "word"}
    char = [r for r in rows if r["level"] == "char"]
    verdicts = []
    if (
        "classic" in word
        and "rnnlm" in word
        and word["classic"]["val_ppl"]
        and word["rnnlm"]["val_ppl"]
    ):
        ratio = word["rnnlm"]["val_ppl"] / word["classic"]["val_ppl"]
        verdicts.append(
            f"word level: rnnlm / classic = {ratio:.3f} (target <= 0.8: {'met' if ratio <= 0.8 else 'NOT met'})"
        )
    for r in char:
        if r["val_loss"] is not None:
            ok = r["val_loss"] <= 1.40
            verdicts.append(
                f"char level: {r['val_loss']:.4f} nats/char (target <= 1.40: {'met' if ok else 'NOT met'})"
            )
    note = (
        "quick mode (seconds per configuration, small corpora): a smoke check, not a measurement"
        if quick
        else ""
    )
    return "\n".join([*lines, "", *(f"- {v}" for v in verdicts), *([f"- {note}"] if note else [])])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds per configuration (tests)")
    ap.add_argument("--word-data", type=Path, default=SHARED / "wikitext-2-mini")
    ap.add_argument("--char-data", type=Path, default=SHARED / "tinyshakespeare")
    ap.add_argument("--word-minutes", type=float, default=None)
    ap.add_argument("--char-minutes", type=float, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--only", choices=["word", "char"], default=None)
    args = ap.parse_args(argv)
    word_min = args.word_minutes or (0.1 if args.quick else 15.0)
    char_min = args.char_minutes or (0.1 if args.quick else 20.0)
    for folder in (args.word_data, args.char_data):
        if not (folder / "train.txt").is_file():
            print(
                f"error: {folder} has no train.txt (pass --word-data/--char-data)", file=sys.stderr
            )
            return 2
    extra = (
        [
            "data.batch_size=4",
            "data.bptt=8",
            "data.eval_batch_size=4",
            "model.embedding_dim=16",
            "model.hidden_dim=16",
        ]
        if args.quick
        else []
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        for case in cases(args.word_data, args.char_data, word_min, char_min):
            if args.only and case.level != args.only:
                continue
            case.overrides += extra
            if args.quick:
                case.tokens_per_step = 4 * 8
            row = measure(
                case, Path(tmp), probe_steps=2 if args.quick else 20, limit_val=args.quick
            )
            rows.append(row)
            print(
                f"{row['name']}: val ppl {row['val_ppl']}, {row['tokens']} tokens in {row['wall_s']:.0f} s",
                flush=True,
            )
    body = table(rows, args.quick)
    print(body)
    command = "python bench/quality.py" + (" --quick" if args.quick else "")
    header = (
        f"## Quality in a time budget (`make bench-quality`)\n\nWritten by `{command}` on "
        f"{time.strftime('%Y-%m-%d %H:%M')} ({os.cpu_count()} CPUs visible). Each configuration first "
        "runs 20 steps to measure its throughput, then trains for the steps that fit in its budget "
        "(`trainer.max_time` caps it too) and validates 10 times on the whole validation split; the "
        "table gives the best validation.\n\n"
    )
    write_section(args.out, "bench-quality", header + body)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
