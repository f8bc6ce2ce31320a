"""Quality benchmark (`make bench-quality`): what rnnlm reaches in a fixed training-time budget.

- Word level, `../shared/data/wikitext-2-mini`, 15 minutes each: the classic recipe
  (`experiment=pytorch_example`) against rnnlm's budget recipe (`experiment=wt2_budget`).
  Target: rnnlm's validation perplexity <= 0.8 x the classic recipe's.
- Character level, `../shared/data/tinyshakespeare`, 20 minutes: `experiment=tinyshakespeare_char`.
  Target: validation loss <= 1.40 nats per character.
- A parallel cell (`--cell`, default mingru) in the comparison presets, by training alone:
  `experiment=cells_char model=<cell>` (20 minutes; target <= 1.38 nats per character) and
  `experiment=cells_word model=<cell>` (15 minutes; reported as a ratio to wt2_budget's perplexity).

Each configuration first runs a few steps and a short validation to measure its throughput on this
machine, then trains for the steps that fit in its budget once start-up and its validations are paid for
(so cosine schedules end with the budget; `trainer.max_time` caps the wall time as well); rnnlm's runs
re-plan those steps from their own measured speed as they go (`callbacks.time_budget`). rnnlm's
checkpoints are then scored again with a test-time adaptation (`src/eval.py`: the continuous cache for
words, dynamic evaluation for characters), tuned on text outside the validation split. Prints a table
and writes it into its own section of `docs/benchmarks.md` (`--out`); `--only` re-measures some cases
and keeps the other rows (saved next to the report as `<out>.quality.json`). `--quick` runs every
configuration for a few steps (for tests and smoke checks; pass small corpora).
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


@dataclass
class Case:
    key: str  # for --only: one of CASE_KEYS
    name: str
    level: str  # word | char
    overrides: list[str]
    minutes: float
    # also score the trained model with a test-time adaptation (a key of ADAPTATIONS)
    adapt: str | None = None
    # validations in the budgeted run, evenly spaced, the last one at the last step (NT-ASGD and the
    # plateau schedule count them)
    validations: int = 10


CASE_KEYS = ("classic", "rnnlm-word", "rnnlm-char", "cells-word", "cells-char")  # the table's order
ONLY_ALIASES = {
    "word": ["classic", "rnnlm-word"],
    "char": ["rnnlm-char"],
    "cells": ["cells-word", "cells-char"],
}
CELL_TARGET = 1.38  # nats per character, the best parallel cell by training alone (issue 21)


def cases(
    word_data: Path, char_data: Path, word_min: float, char_min: float, cell: str = "mingru"
) -> list[Case]:
    word = ["data=text_files", f"data.path={word_data}", "data.tokenizer=word"]
    char = ["data=text_files", f"data.path={char_data}", "data.tokenizer=char"]
    return [
        Case(
            "classic",
            "classic (experiment=pytorch_example)",
            "word",
            ["experiment=pytorch_example", *word],
            word_min,
        ),
        Case(
            "rnnlm-word",
            "rnnlm (experiment=wt2_budget)",
            "word",
            ["experiment=wt2_budget", *word],
            word_min,
            adapt="cache",
            # It averages from 80% of the run on: the last validation is the best, and nothing in the
            # recipe reads the others (nonmono=null). Each costs ~6 s of the budget (123 k tokens).
            validations=2,
        ),
        Case(
            "rnnlm-char",
            "rnnlm (experiment=tinyshakespeare_char)",
            "char",
            ["experiment=tinyshakespeare_char", *char],
            char_min,
            adapt="dynamic",
            validations=5,  # cosine decay: the best model is the last one; each validation is ~1.5%
        ),
        Case(
            "cells-word",
            f"{cell} (experiment=cells_word model={cell})",
            "word",
            ["experiment=cells_word", f"model={cell}", *word],
            word_min,
            validations=4,
        ),
        Case(
            "cells-char",
            f"{cell} (experiment=cells_char model={cell})",
            "char",
            ["experiment=cells_char", f"model={cell}", *char],
            char_min,
            validations=5,
        ),
    ]


def selected(only: str | None) -> set[str] | None:
    """The case keys named by --only (comma-separated keys or the aliases word / char); None: all."""
    if not only:
        return None
    keys = {k for part in only.split(",") for k in ONLY_ALIASES.get(part.strip(), [part.strip()])}
    if not keys <= set(CASE_KEYS):
        raise SystemExit(
            f"error: --only {only}: unknown {sorted(keys - set(CASE_KEYS))}; use word, char or "
            f"{list(CASE_KEYS)}"
        )
    return keys


# The best checkpoint only (to score it again with a test-time adaptation): no samples, no progress bar.
CHECKPOINT_ONLY = [
    "callbacks=default",
    "~callbacks.text_sample",
    "~callbacks.progress_bar",
    "~callbacks.tokens_per_sec",
]
# rnnlm's budgeted runs re-plan their steps from their own measured speed as they go, so the cosine
# decay and NT-ASGD's averaging deadline end with the budget even when the machine's speed drifts from
# the probe's (it did by 10% either way: runs ended at 836 s of 900, or were cut 14% short of their plan).
TIME_BUDGET = ["callbacks.time_budget.enabled=true"]
# Test-time adaptations (src/eval.py), tuned on text the reported validation split is not part of: the
# word corpus has a separate test split; tiny Shakespeare's test split is a copy of its validation
# split, so the char model is tuned on the last 100k characters of its training split instead.
ADAPTATIONS = {
    "cache": ["cache.window=2000", "cache.tune_on=test"],
    "dynamic": ["dynamic.lr=0.1", "dynamic.tune_on=train", "dynamic.tune_tokens=100000"],
}
QUICK_ADAPTATIONS = {
    "cache": ["cache.window=50", "cache.tune_on=test"],
    "dynamic": ["dynamic.lr=0.1", "dynamic.tune_on=test", "dynamic.lrs=[0.1]"],
}


# The throughput probe: only the tokens/s callback, whose steady-state figure leaves warm-up out.
THROUGHPUT_ONLY = [
    "callbacks=default",
    "~callbacks.text_sample",
    "~callbacks.progress_bar",
    "~callbacks.model_checkpoint",
    "callbacks.tokens_per_sec.warmup_steps=10",
]


def _train(overrides: list[str], run_dir: Path, timeout: float, callbacks: list[str]) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "src/train.py",
        *overrides,
        *callbacks,
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


def score_adapted(run_dir: Path, args: list[str]) -> dict:
    """The run's best checkpoint scored on the validation split with a test-time adaptation."""
    out = run_dir / "eval-adapted"
    cmd = [
        sys.executable,
        "src/eval.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        "eval.splits=[valid]",
        *args,
        f"hydra.run.dir={out}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0 or not (out / "eval.json").is_file():
        raise RuntimeError(f"scoring {run_dir} with {args} failed:\n{proc.stderr[-3000:]}")
    result = json.loads((out / "eval.json").read_text())
    return {**result["adaptation"], **result["splits"]["valid"], "eval_s": time.perf_counter() - t0}


STARTUP_S = 15.0  # process start, data loading and warm-up of a budgeted run (measured: 10-15 s)
PROBE_VAL_BATCHES = 20  # validation windows the probe times
# Training steps the probe runs (the first 10 untimed): 20 gave step budgets 25% apart from one run of the
# same configuration to the next (variable-length windows, a noisy machine).
PROBE_STEPS = 60


def validation_tokens(case: Case) -> int:
    """Tokens in the validation split (words and line ends, or characters): what one validation reads."""
    path = next(o.split("=", 1)[1] for o in case.overrides if o.startswith("data.path="))
    text = (Path(path) / "valid.txt").read_text(encoding="utf-8")
    return len(text.split()) + text.count("\n") if case.level == "word" else len(text)


def measure(
    case: Case, work: Path, probe_steps: int, limit_val: bool, adapt: bool = True
) -> list[dict]:
    """Throughput probe, then the budgeted run; returns its row of the table (two with an adaptation,
    unless `adapt` is false)."""
    val_cap = ["+trainer.limit_val_batches=2"] if limit_val else []
    budget_s = case.minutes * 60
    n_val = case.validations
    if probe_steps == 0:  # quick mode: a fixed few steps, no throughput probe
        steps = 2 * n_val
    else:
        probe = _train(
            [
                *case.overrides,
                f"+trainer.max_steps={probe_steps}",
                f"trainer.val_check_interval={probe_steps}",
                f"+trainer.limit_val_batches={PROBE_VAL_BATCHES}",
            ],
            work / f"{case.key}-probe",
            timeout=600,
            callbacks=THROUGHPUT_ONLY,
        )
        tok_s = probe.get("steady_tokens_per_sec") or probe.get("tokens_per_sec") or 0.0
        val_tok_s = probe.get("val_tokens_per_sec") or tok_s
        # batch x window length, averaged over the probe (variable-length BPTT varies it)
        tokens_per_step = (probe.get("tokens_seen") or 0) / max(probe.get("steps") or 0, 1)
        # The budget also pays for start-up and the validations: leave them their time, so the
        # schedule (cosine decay) ends when the budget does rather than being cut short by max_time.
        reserve = STARTUP_S + n_val * validation_tokens(case) / max(val_tok_s, 1e-9)
        train_s = max(budget_s - reserve, budget_s / 2)
        steps = (
            max(n_val, int(train_s * tok_s / tokens_per_step))
            if tok_s and tokens_per_step
            else 10**6
        )
    # Validate n_val times, every `every` steps across epochs, the last one at the last step
    # (validating only at epoch ends would waste the last partial epoch's training).
    every = steps // n_val
    steps = every * n_val
    h, rem = divmod(int(math.ceil(budget_s)), 3600)
    m, s = divmod(rem, 60)
    t0 = time.perf_counter()
    run_dir = work / case.key
    result = _train(
        [
            *case.overrides,
            f"+trainer.max_steps={steps}",
            f"trainer.max_time=00:{h:02d}:{m:02d}:{s:02d}",
            f"trainer.val_check_interval={every}",
            "trainer.check_val_every_n_epoch=null",
            *val_cap,
        ],
        run_dir,
        timeout=budget_s * 3 + 600,
        callbacks=(  # the classic recipe as the example runs it; rnnlm's as a user would
            ["callbacks=none"]
            if case.key == "classic"
            else [*CHECKPOINT_ONLY, *([] if limit_val else TIME_BUDGET)]
        ),
    )
    ppl = result.get("best_val_ppl")
    row = {
        "name": case.name,
        "key": case.key,
        "level": case.level,
        "budget_min": case.minutes,
        "wall_s": time.perf_counter() - t0,
        "tokens": result.get("tokens_seen"),
        "epochs": result.get("epochs"),
        "val_ppl": ppl,
        "val_loss": math.log(ppl) if ppl else None,
        "measured": time.strftime("%Y-%m-%d %H:%M"),
    }
    if not case.adapt or not adapt:
        return [row]
    a = score_adapted(run_dir, (QUICK_ADAPTATIONS if limit_val else ADAPTATIONS)[case.adapt])
    settings = ", ".join(
        f"{k} {a[k]:g}" for k in ("window", "theta", "weight", "lr", "decay") if k in a
    )
    what = {"cache": "continuous cache", "dynamic": "dynamic evaluation"}[a["method"]]
    name = (
        f"{case.name} + {what} ({settings}; chosen on {a['tuned_on']}; "
        f"scoring took {a['eval_s']:.0f} s)"
    )
    adapted = {
        **row,
        "name": name,
        "adaptation": a["method"],
        "val_ppl": a["ppl"],
        "val_loss": a["loss"],
    }
    return [row, adapted]


def table(rows: list[dict], quick: bool) -> str:
    lines = [
        "| configuration | level | budget | wall time | tokens seen | epochs | val perplexity | val loss (nats) | measured |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ppl = f"{r['val_ppl']:.2f}" if r["val_ppl"] else "n/a"
        loss = f"{r['val_loss']:.4f}" if r["val_loss"] is not None else "n/a"
        lines.append(
            f"| {r['name']} | {r['level']} | {r['budget_min']:g} min | {r['wall_s']:.0f} s | "
            f"{r['tokens'] or 0:,} | {r['epochs']} | {ppl} | {loss} | {r.get('measured', '')} |"
        )
    classic = next((r for r in rows if r["key"] == "classic"), None)
    budget = next((r for r in rows if r["key"] == "rnnlm-word" and not r.get("adaptation")), None)
    verdicts = []
    for r in rows:
        what = "with test-time adaptation" if r.get("adaptation") else "training alone"
        if r["key"] == "rnnlm-word" and classic and r["val_ppl"]:
            ratio = r["val_ppl"] / classic["val_ppl"]
            verdicts.append(
                f"word level, {what}: rnnlm / classic = {ratio:.3f} "
                f"(target <= 0.8: {'met' if ratio <= 0.8 else 'NOT met'})"
            )
        if r["key"] == "cells-word" and budget and r["val_ppl"]:
            verdicts.append(
                f"word level, {r['name']}: perplexity / wt2_budget's = "
                f"{r['val_ppl'] / budget['val_ppl']:.3f}"
            )
        if r["level"] == "char" and r["val_loss"] is not None:
            target = CELL_TARGET if r["key"] == "cells-char" else 1.40
            ok = r["val_loss"] <= target
            verdicts.append(
                f"char level, {r['name'].split(' (')[0] if r['key'] == 'cells-char' else what}: "
                f"{r['val_loss']:.4f} nats/char (target <= {target:.2f}: {'met' if ok else 'NOT met'})"
            )
    note = (
        "quick mode (seconds per configuration, small corpora): a smoke check, not a measurement"
        if quick
        else ""
    )
    return "\n".join([*lines, "", *(f"- {v}" for v in verdicts), *([f"- {note}"] if note else [])])


def merge_rows(rows: list[dict], saved: Path, only: set[str] | None) -> list[dict]:
    """With --only, the other cases' rows come from the last run that measured them (saved as JSON next
    to the report), so the table always shows every case; then the rows are saved for next time."""
    if only is not None and saved.is_file():
        kept = [r for r in json.loads(saved.read_text()) if r.get("key") not in only]
        rows = sorted([*kept, *rows], key=lambda r: CASE_KEYS.index(r["key"]))
    saved.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds per configuration (tests)")
    ap.add_argument("--word-data", type=Path, default=SHARED / "wikitext-2-mini")
    ap.add_argument("--char-data", type=Path, default=SHARED / "tinyshakespeare")
    ap.add_argument("--word-minutes", type=float, default=None)
    ap.add_argument("--char-minutes", type=float, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument(
        "--only",
        default=None,
        help="measure only these cases (word, char, cells, or keys "
        f"{', '.join(CASE_KEYS)}; comma-separated); the others' rows are kept from the last run",
    )
    ap.add_argument(
        "--cell",
        default="mingru",
        help="the parallel cell of the cells-word and cells-char cases (a model= option)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override for rnnlm's own configurations, not the classic recipe (repeatable; "
        "for trying a variant: combine with --only)",
    )
    ap.add_argument(
        "--no-adaptation",
        action="store_true",
        help="skip the test-time adaptation rows (they take 1-10 minutes of scoring after training)",
    )
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the runs (logs, metrics.csv, checkpoints) in DIR, a new or empty folder, instead of a "
        "temporary one",
    )
    args = ap.parse_args(argv)
    only = selected(args.only)
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
            "model.adaptive_cutoffs=[4,8]",  # wt2_budget's adaptive softmax on a small vocabulary
            "model.last_hidden_dim=null",
            "model_budget=null",  # the cells presets' sizes: tiny like the rest
        ]
        if args.quick
        else []
    )
    rows = []
    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            print(f"error: --keep {args.keep} is not empty: name a new folder", file=sys.stderr)
            return 2
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        work = args.keep or Path(tmp)
        for case in cases(args.word_data, args.char_data, word_min, char_min, args.cell):
            if only is not None and case.key not in only:
                continue
            case.overrides += extra
            if case.key != "classic" and args.set:
                case.overrides += args.set
                case.name += f" with {' '.join(args.set)}"  # a variant: its row says so
            for row in measure(
                case,
                work,
                probe_steps=0 if args.quick else PROBE_STEPS,
                limit_val=args.quick,
                adapt=not args.no_adaptation,
            ):
                rows.append(row)
                print(
                    f"{row['name']}: val ppl {row['val_ppl']}, {row['tokens']} tokens in {row['wall_s']:.0f} s",
                    flush=True,
                )
    rows = merge_rows(rows, args.out.with_suffix(".quality.json"), only)
    body = table(rows, args.quick)
    print(body)
    command = " ".join(["python bench/quality.py", *(argv if argv is not None else sys.argv[1:])])
    header = (
        f"## Quality in a time budget (`make bench-quality`)\n\nLast written by `{command}` on "
        f"{time.strftime('%Y-%m-%d %H:%M')} ({os.cpu_count()} CPUs visible; `--only` re-measures some "
        "cases and keeps the others' rows, each row says when it was measured). Each configuration "
        f"first runs {PROBE_STEPS} steps and {PROBE_VAL_BATCHES} validation windows to measure its "
        "throughput, then trains for the steps that fit in its budget after start-up and validations "
        "(`trainer.max_time` caps it too; rnnlm's runs re-plan those steps from their own speed as they "
        "go, `callbacks.time_budget`, so their schedules end with the budget) and validates on the whole validation split 10 times (the "
        "classic recipe, whose learning rate follows the validations), 2 (rnnlm's word recipe), 4 (a cell's word "
        "preset) or 5 (the char recipe and preset); "
        "the table gives the best validation. A row with ` + ` scores that run's best checkpoint again "
        "with a test-time adaptation of `src/eval.py` (continuous cache or dynamic evaluation, see "
        "[quality.md](quality.md)); its scoring time is not training time.\n\n"
    )
    write_section(args.out, "bench-quality", header + body)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
