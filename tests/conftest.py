"""Shared fixtures: a tiny corpus, an isolated token cache, the repo root and helpers to train.

Everything is sized for a 2-core CPU: a corpus of a few KB, 16-unit models, `debug=smoke` runs.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "src" / "rnnlm" / "conf"
TRAIN_SCRIPT = "src/train.py"

# A small closed vocabulary, so word-level runs have a tiny vocabulary and few <unk>.
WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "dog",
    "ran",
    "to",
    "big",
    "red",
    "house",
    "with",
    "small",
    "blue",
    "car",
]

# Tiny sizes for every end-to-end run: 16-unit models, 4 columns x 8 steps, a few batches.
TINY_SIZES = [
    "debug=smoke",
    "model.embedding_dim=16",
    "model.hidden_dim=16",
    "data.batch_size=4",
    "data.bptt=8",
]


def write_corpus(
    folder: Path, lines: dict[str, int] | None = None, seed: int = 0, words: list[str] = WORDS
) -> Path:
    """Write train/valid/test.txt of random sentences over `words` into `folder`; return it."""
    lines = lines or {"train": 150, "valid": 30, "test": 30}
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in lines.items():
        text = "\n".join(
            " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(n)
        )
        (folder / f"{split}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


def tiny_overrides(corpus: Path) -> list[str]:
    """Overrides for a tiny run on `corpus` (a folder with train/valid/test.txt)."""
    return ["data=text_files", f"data.path={corpus}", *TINY_SIZES]


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Token cache and default output folder in a temp dir: tests never touch ~/.cache or outputs/."""
    cache = tmp_path_factory.mktemp("rnnlm-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNLM_DATA_DIR", str(cache))
        mp.setenv("RNNLM_OUTPUT_DIR", str(tmp_path_factory.mktemp("outputs")))
        # Hugging Face caches (datasets, Hub downloads) in the temp dir too, and never the network.
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        # User-facing error messages must be tested as users see them.
        mp.delenv("RNNLM_DEBUG", raising=False)
        mp.delenv("HYDRA_FULL_ERROR", raising=False)
        yield cache


@pytest.fixture(scope="session")
def cache_dir(_isolated_env: Path) -> Path:
    return _isolated_env


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny word corpus (about 4 KB of train text), shared by the whole session (cache hits)."""
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def run_train_script(
    args: list[str], timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python src/train.py *args` from the repo root, output captured as text."""
    return subprocess.run(
        [sys.executable, TRAIN_SCRIPT, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def run_script(
    script: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python src/<script>.py *args` (eval, generate, export, ...) from the repo root, output captured."""
    return subprocess.run(
        [sys.executable, f"src/{script}.py", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def start_train_script(
    args: list[str], new_session: bool = False, launcher: Sequence[str] = ()
) -> subprocess.Popen[str]:
    """Like run_train_script, but started in the background (call `.communicate()`). `new_session`:
    in a process group of its own, so that `os.killpg(proc.pid, ...)` reaches its DDP ranks too.
    `launcher`: interpreter arguments before the script, e.g. `-m torch.distributed.run --nnodes=2 ...`."""
    return subprocess.Popen(
        [sys.executable, *launcher, TRAIN_SCRIPT, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        start_new_session=new_session,
    )


# Runs `src/train.py` once per case, each in its own forked process with its own argv, exit status,
# stdout and stderr, after importing rnnlm/Lightning/torch only once in the parent (that import is
# most of a short run's cost). Each child executes src/train.py as `__main__`, as `python src/train.py`
# does; the parent never runs torch code or Hydra before forking.
_FORK_RUNNER = r"""
import json, os, runpy, sys, traceback
spec = json.loads(open(sys.argv[1]).read())
os.chdir(spec["cwd"])
sys.path.insert(0, os.path.join(spec["cwd"], "src"))  # sys.path[0] of `python src/train.py`
import rnnlm.training.run  # noqa: F401  (the expensive imports, once)
import hydra  # noqa: F401
results = {}
for name, args in spec["cases"].items():
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for fd, suffix in ((1, "stdout"), (2, "stderr")):
            f = os.open(os.path.join(spec["out"], f"{name}.{suffix}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(f, fd)
            os.close(f)
        sys.argv = [spec["script"], *args]
        code = 0
        try:
            runpy.run_path(spec["script"], run_name="__main__")
        except SystemExit as e:  # what the interpreter does with it
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    results[name] = os.waitstatus_to_exitcode(status)
with open(os.path.join(spec["out"], "results.json"), "w") as f:
    json.dump(results, f)
"""


def run_train_script_cases(
    cases: dict[str, list[str]], workdir: Path, timeout: float = 300
) -> dict[str, subprocess.CompletedProcess[str]]:
    """`python src/train.py *args` for each case, each in its own process (see _FORK_RUNNER)."""
    import json

    workdir.mkdir(parents=True, exist_ok=True)
    spec = {"cwd": str(REPO_ROOT), "script": TRAIN_SCRIPT, "out": str(workdir), "cases": cases}
    (workdir / "spec.json").write_text(json.dumps(spec))
    runner = subprocess.run(
        [sys.executable, "-c", _FORK_RUNNER, str(workdir / "spec.json")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
        check=False,
    )
    assert runner.returncode == 0, runner.stderr[-3000:]
    codes = json.loads((workdir / "results.json").read_text())
    return {
        name: subprocess.CompletedProcess(
            [sys.executable, TRAIN_SCRIPT, *args],
            codes[name],
            (workdir / f"{name}.stdout").read_text(),
            (workdir / f"{name}.stderr").read_text(),
        )
        for name, args in cases.items()
    }


@pytest.fixture(scope="session")
def run_train():
    """The helper that runs the train script in a subprocess."""
    return run_train_script


@contextlib.contextmanager
def composed(overrides: list[str], output_dir: Path) -> Iterator:
    """The task config of `train` with `overrides`, as `@hydra.main` would hand it to the task.

    Inside the block HydraConfig is set (so `${hydra:runtime.output_dir}` resolves to `output_dir`)
    and the `hydra` node is removed from the task config, like Hydra does before calling the task.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    output_dir = Path(output_dir)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[*overrides, f"hydra.run.dir={output_dir}"],
            return_hydra_config=True,
        )
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.name = "train"
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            yield cfg
        finally:
            HydraConfig.instance().cfg = None


def train_in_process(overrides: list[str], output_dir: Path) -> float:
    """`rnnlm.training.run.train` on the composed config; returns the best validation perplexity."""
    from rnnlm.training.run import train

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # seed_everything() exports PL_GLOBAL_SEED / PL_SEED_WORKERS: keep them out of later tests.
    saved_env = {k: v for k, v in os.environ.items() if k.startswith("PL_")}
    try:
        with composed(overrides, output_dir) as cfg:
            return train(cfg)
    finally:
        for key in [k for k in os.environ if k.startswith("PL_")]:
            del os.environ[key]
        os.environ.update(saved_env)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best checkpoint of one tiny character-level GRU run, shared by the tests that only read it
    (export, serving)."""
    root = tmp_path_factory.mktemp("tiny-run")
    corpus = write_corpus(root / "corpus")
    out = run_train_script([*tiny_overrides(corpus), "model=gru", f"hydra.run.dir={root / 'run'}"])
    assert out.returncode == 0, out.stderr[-2000:]
    return root / "run" / "checkpoints" / "best.ckpt"
