"""How fast a refused command answers: `python src/train.py <bad input>` from start to exit.

A typo or an impossible value is refused before torch and Lightning are imported (rnnlm.cli.prepare_argv),
so the answer costs Python, Hydra and OmegaConf only. Target: under 1.5 s on 2 cores.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.5

# What a user mistypes, and what a resume can get wrong; each is answered with one `error:` line.
COMMANDS = {
    "typo in a key": ["model.hiden_dim=64"],
    "impossible value": ["optim.lr=-1"],
    "resume of a missing run": ["resume=/nonexistent/run"],
}


def bench_refusals(repeats: int, log: callable) -> dict:  # type: ignore[valid-type]
    """Median wall time of each refused command over `repeats` runs (after one warm-up run)."""
    rows = {}
    env = {**os.environ, "RNNLM_OUTPUT_DIR": "/nonexistent/outputs"}
    for name, args in COMMANDS.items():
        times = []
        for k in range(repeats + 1):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "src/train.py", *args],
                cwd=ROOT, env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if k:  # the first run warms the file cache
                times.append(time.perf_counter() - t0)
        assert out.returncode == 2 and out.stderr.startswith("error: "), out.stderr[-2000:]
        rows[name] = {
            "command": " ".join(["python src/train.py", *args]),
            "median_s": statistics.median(times),
            "max_s": max(times),
            "message": out.stderr.strip()[:160],
        }
        log(f"  {name}: {rows[name]['median_s']:.2f} s")
    return rows


def render_refusals(rows: dict) -> list[str]:
    lines = [
        "### How fast a refused command answers",
        "",
        "Wall time of `python src/train.py` with bad input, from start to exit status 2 (median of the "
        "runs after a warm-up run; the check imports neither torch nor Lightning).",
        "",
        "| input | command | median | slowest |",
        "|---|---|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | `{r['command']}` | {r['median_s']:.2f} s | {r['max_s']:.2f} s |")
    lines += ["", f"Target: under {TARGET_S} s.", ""]
    return lines
