"""How each side of a training case is run: the classic loop (bench/reference.py) and rnnlm as a user
starts it (`python src/train.py experiment=...`), each a child process of its own, so that each pays its
own start-up and memory; what each reports back (steady tokens/s, validation perplexity).

rnnlm runs with an explicit `trainer.precision` (32-true or bf16-mixed), so that a row of the report
always says which path it measured, whatever `trainer.precision=auto` would pick on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cases import Case

ROOT = Path(__file__).resolve().parents[1]
# The rnnlm sides of a case: the key in results.json -> `trainer.precision`.
RNNLM_SIDES = {"rnnlm": "32-true", "bf16": "bf16-mixed"}


def log(msg: str) -> None:
    """A time-stamped progress line (a full run takes minutes; each line says where it is)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_child(
    cmd: list[str], log_file: Path, env: dict | None = None, timeout: float = 1800
) -> dict:
    """Run a command (output to log_file); its wall time and peak resident memory."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_file, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log_file.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); log {log_file}:\n{tail}")
    if wall > timeout:
        log(f"warning: {cmd[1]} took {wall:.0f} s")
    return {"wall_s": wall, "max_rss_mb": usage.ru_maxrss / 1024}


def run_reference(case: Case, args: argparse.Namespace, data: Path, seed: int, tag: str) -> dict:
    """One run of the classic loop (float32): its steady tokens/s, validation perplexity, vocabulary."""
    out = args.runs / f"{case.name}-reference-{tag}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "bench/reference.py",
        "--config",
        case.ref_config,
        "--data",
        str(data),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(seed),
        "--device",
        args.device,
        "--eval",
        "--json",
        str(out / "result.json"),
    ]
    if args.case_batch:
        cmd += ["--batch-size", str(args.case_batch)]
    cmd += ["--eval-windows", str(args.eval_windows)]
    run_child(cmd, out / "log.txt")
    r = json.loads((out / "result.json").read_text())
    return {
        "tokens_per_sec": r["tokens_per_sec"],
        "val_ppl": r.get("val_ppl"),
        "vocab": r["vocab_size"],
    }


def rnnlm_cmd(
    experiment: str,
    data: Path,
    out: Path,
    args: argparse.Namespace,
    *extra: str,
    precision: str | None = None,
) -> list[str]:
    """`python src/train.py experiment=...` as a user types it, on `args.device`; `precision` sets
    `trainer.precision` (None: rnnlm's default)."""
    cmd = [
        sys.executable,
        "src/train.py",
        f"experiment={experiment}",
        f"data.path={data}",
        f"hydra.run.dir={out}",
        "test=false",
    ]
    if args.device == "cuda":
        cmd.append("trainer=gpu")  # one GPU, cuDNN
    elif args.device == "cpu":
        cmd.append("trainer.accelerator=cpu")
    if precision:
        cmd.append(f"trainer.precision={precision}")
    return cmd + list(extra)


def run_rnnlm(
    case: Case, args: argparse.Namespace, data: Path, seed: int, tag: str, side: str = "rnnlm"
) -> dict:
    """One run of rnnlm at the precision of `side` (RNNLM_SIDES): its steady tokens/s and validation
    perplexity, from its result.json."""
    out = args.runs / f"{case.name}-{side}-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    extra = [
        f"seed={seed}",
        f"+trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.steps}",  # validate once, after the last step
        f"callbacks.tokens_per_sec.warmup_steps={args.warmup}",
        *case.overrides,
    ]
    if args.case_batch:
        extra.append(f"data.batch_size={args.case_batch}")
    extra.append(f"+trainer.limit_val_batches={args.eval_windows}")
    cmd = rnnlm_cmd(case.experiment, data, out, args, *extra, precision=RNNLM_SIDES[side])
    run_child(cmd, out / "log.txt", env=args.env)
    r = json.loads((out / "result.json").read_text())
    if r.get("status") != "finished":
        raise RuntimeError(f"rnnlm run {out} did not finish: {r}")
    ran = r.get("precision", RNNLM_SIDES[side])  # recorded by rnnlm since `trainer.precision=auto`
    if ran != RNNLM_SIDES[side]:
        raise RuntimeError(f"rnnlm run {out} ran in {ran}, not {RNNLM_SIDES[side]}")
    return {"tokens_per_sec": r["steady_tokens_per_sec"], "val_ppl": r.get("best_val_ppl")}
