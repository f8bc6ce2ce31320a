"""A built wheel works on its own: installed into a fresh virtual environment, its console scripts find
the configs shipped inside the package and train and generate from a folder outside the checkout.

The fresh environment reuses the already-installed dependencies through a `.pth` line pointing at this
environment's site-packages (nothing is downloaded); that line adds the folder to `sys.path` without
running its `.pth` files, so the checkout's editable install of rnnlm stays out of sight.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from conftest import REPO_ROOT, TINY_SIZES


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout}\n{out.stderr}"
    return out


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path, corpus_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Built from a copy of the sources, so no build/ folder left from an earlier build can fill gaps
    # in the package data (and the checkout gets no build/ or egg-info of its own).
    source = tmp_path / "source"
    shutil.copytree(
        REPO_ROOT, source,
        ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "outputs", "tests", "__pycache__"),
    )  # fmt: skip
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(source)],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    (wheel,) = wheels.glob("rnnlm-*.whl")

    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(fresh), "platbase": str(fresh)}))
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)],
        cwd=tmp_path, env=env,
    )  # fmt: skip

    work = tmp_path / "elsewhere"  # not the checkout: nothing relative to it can be found
    work.mkdir()
    where = _run([str(python), "-c", "import rnnlm; print(rnnlm.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(fresh), where.stdout
    # the fused scan's C++ source ships too (package data), so model.scan=auto finds it when installed
    assert (Path(where.stdout.strip()).parent / "models" / "fused_scan.cpp").is_file()

    bin_dir = fresh / "bin"
    run_env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    _run(
        [str(bin_dir / "rnnlm-train"), "data=text_files", f"data.path={corpus_dir}", *TINY_SIZES,
         "hydra.run.dir=run"],
        cwd=work, env=run_env,
    )  # fmt: skip
    ckpt = work / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    sample = _run(
        [str(bin_dir / "rnnlm-generate"), f"ckpt_path={ckpt}", "prompt=the", "max_new_tokens=5",
         "seed=0"],
        cwd=work, env=run_env,
    )  # fmt: skip
    assert sample.stdout.startswith("the")
