"""Every command in the README's shell blocks works as documented.

Default suite: each `python src/<command>.py ...` passes the front door's own check (the `+` and JSON
rewriting, then the config check that refuses a bad command before anything runs), with the README's
placeholders (<ckpt>, /my/corpus, ...) filled with real paths; each `make` target exists.
Slow suite: each command runs for real through its entry point, at tiny sizes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, TINY_SIZES, run_train_script, tiny_overrides, write_corpus
from rnnlm.config import CONF_DIR
from rnnlm.config.check import plain_target_keys, validate_overrides

README = REPO_ROOT / "README.md"
CONFIGS = {"train", "eval", "generate", "translate", "search", "rank", "export", "serve"}
# Translation commands: tests/e2e/test_translation_e2e.py runs them on pairs, with a translation checkpoint.
TRANSLATION = ("experiment=translate_", "data=pairs", "data=tatoeba_eng_fra", "src/translate.py")
# What the slow test cannot run here, and what it runs instead.
NOT_HERE = {
    "trainer=gpu": "no GPU: its config is checked",
    "hydra/launcher=slurm": "no SLURM cluster: its config is checked",
}


def readme_commands(paths: dict[str, str] | None = None) -> list[list[str]]:
    """The commands of the README's ```bash blocks, as argument lists, each placeholder (some have
    spaces: <file or folder>) replaced by its path first."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            for placeholder, value in (paths or {}).items():
                line = line.replace(placeholder, value)
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def _paths(root: Path, ckpt: str = "", sweep: str = "") -> dict[str, str]:
    corpus = write_corpus(root / "corpus")
    # another corpus of the same words, large enough for eval.batch_size=64
    other = write_corpus(root / "other", {"train": 150, "valid": 300, "test": 300}, seed=1)
    text = corpus / "train.txt"
    hf = root / "hf"
    hf.mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        rows = [
            json.dumps({"text": line}) for line in (corpus / "train.txt").read_text().splitlines()
        ]
        (hf / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return {
        "outputs/train/runs/<run>/checkpoints/best.ckpt": ckpt,
        "outputs/train/multiruns/<timestamp>": sweep,
        "<ckpt>": ckpt,
        "<translation ckpt>": ckpt,
        "<file or folder>": str(text),
        "<dataset or folder>": str(hf),
        "<folder>": sweep,
        "/other/corpus": str(other),
        **{p: str(corpus) for p in ("/my/corpus", "/big/corpus", "/path/to/wikitext-2")},
    }


def _check_front_door(name: str, args: list[str]) -> None:
    """What prepare_argv does before Hydra starts, per job of a sweep (each value of each sweep key)."""
    if name == "export" and args and args[0] in ("hub", "onnx"):
        args = [f"format={args[0]}", *args[1:]]
    args = [a for a in args if a not in ("-m", "--multirun")]
    if "--cfg" in args:
        i = args.index("--cfg")
        args = args[:i] + args[i + 2 :]
    args = plain_target_keys(name, CONF_DIR, args)
    sweeps = {i: a.split("=", 1)[1].split(",") for i, a in enumerate(args) if _is_sweep(a)}
    # the first job whole; each other choice of a config group by its file (composing every job of an
    # 8-model sweep would cost seconds), each other value of a plain key by the check
    validate_overrides(
        name, CONF_DIR, [a.split(",")[0] if j in sweeps else a for j, a in enumerate(args)]
    )
    for i, values in sweeps.items():
        key = args[i].split("=", 1)[0]
        group = Path(CONF_DIR) / key
        for value in values[1:]:
            if group.is_dir():
                assert (group / f"{value}.yaml").is_file(), f"{key}={value}: no such option"
            else:
                job = [a.split(",")[0] if j in sweeps else a for j, a in enumerate(args)]
                job[i] = f"{key}={value}"
                validate_overrides(name, CONF_DIR, job)


def _is_sweep(arg: str) -> bool:
    key, _, value = arg.partition("=")
    return (
        "," in value and not value.startswith(("[", "'", '"', "{")) and not key.startswith("hydra.")
    )


def test_the_readme_has_commands_of_every_kind() -> None:
    scripts = {
        Path(a[1]).stem for a in readme_commands() if a[0] == "python" and a[1].startswith("src/")
    }
    assert scripts >= {"train", "eval", "generate", "search", "rank", "export", "serve"}


def test_every_readme_command_passes_the_front_door(tmp_path: Path) -> None:
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"")  # the config check does not open it
    paths = _paths(tmp_path, str(ckpt), str(tmp_path))
    checked = 0
    for argv in readme_commands(paths):
        if argv[0] == "make":
            target = argv[1]
            out = subprocess.run(
                ["make", "-n", target, *argv[2:]], cwd=REPO_ROOT, capture_output=True, text=True
            )
            assert out.returncode == 0, f"make {target}: {out.stderr}"
            continue
        if argv[0] == "tensorboard":  # installed beside the interpreter
            assert (Path(sys.executable).parent / "tensorboard").exists()
            continue
        assert argv[0] == "python" and argv[1].startswith("src/"), argv
        name = Path(argv[1]).stem
        if name not in CONFIGS:  # src/report.py takes a folder, not Hydra overrides
            continue
        _check_front_door(name, argv[2:])
        checked += 1
    assert checked >= 20


# -- slow: every command for real ---------------------------------------------------------------------
def _serve_and_ask(argv: list[str]) -> None:
    import httpx

    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [a if not a.startswith("port=") else f"port={port}" for a in argv]
    proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            try:
                body = {"prompt": "the", "max_new_tokens": 5, "stream": False}
                got = httpx.post(f"http://127.0.0.1:{port}/generate", json=body, timeout=30)
                assert got.status_code == 200 and got.json()["text"].startswith("the")
                return
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        raise AssertionError("the server did not answer")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "trained-on")
    run = tmp_path / "run"
    trained = run_train_script(
        [*tiny_overrides(corpus), "data.tokenizer=word", f"hydra.run.dir={run}"]
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    sweep = tmp_path / "sweep"
    done = run_train_script(
        ["-m", "model=gru,lstm", *tiny_overrides(corpus), f"hydra.sweep.dir={sweep}"]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    paths = _paths(tmp_path, str(run / "checkpoints" / "best.ckpt"), str(sweep))
    work = tmp_path / "work"
    work.mkdir()
    # commands run from `work` (what they write stays out of the checkout): the presets' corpora by path
    shared = (REPO_ROOT.parent / "shared" / "data").resolve()
    env = {**os.environ, "WANDB_MODE": "offline", "BENCH_DATA": str(shared)}
    failed: list[str] = []
    for n, argv in enumerate(readme_commands(paths)):
        if argv[:2] == ["make", "test"] or argv[0] == "tensorboard":
            continue  # the suite is what make test runs; tensorboard serves until stopped
        if argv[0] == "make":
            extra = [f"ARGS={' '.join(TINY_SIZES)} hydra.run.dir={work / f'make{n}'}"]
            cmd = ["make", "-C", str(REPO_ROOT), *argv[1:], *(extra if argv[1] == "train" else [])]
        else:
            name = Path(argv[1]).stem
            cmd = [sys.executable, str(REPO_ROOT / argv[1]), *argv[2:]]  # run from `work`
            if any(k in a for a in argv for k in NOT_HERE):
                continue  # checked by test_every_readme_command_passes_the_front_door
            if any(k in a for a in argv for k in TRANSLATION):
                continue  # run on pairs by tests/e2e/test_translation_e2e.py
            if name == "train":
                # a sweep goes where `make report RUN=latest` looks (RNNLM_OUTPUT_DIR, a temp dir)
                tiny = [
                    t
                    for t in TINY_SIZES
                    if "transformer" not in " ".join(argv) or "hidden" not in t
                ]
                cmd += [*tiny, "model_budget=null", "hydra.sweeper.n_trials=2"]
                if "model.softmax=adaptive" in argv:  # its cutoffs are for a 100k-word vocabulary
                    cmd.append("model.adaptive_cutoffs=[4,8]")
                cmd = [
                    c for c in cmd if c != "hydra.sweeper.n_trials=2" or "optuna" in " ".join(argv)
                ]
                if "-m" not in argv:
                    cmd.append(f"hydra.run.dir={work / f'train{n}'}")
            if name == "serve":
                _serve_and_ask(cmd)
                continue
        out = subprocess.run(
            cmd, cwd=work, capture_output=True, text=True, timeout=600, env=env, check=False
        )
        if out.returncode != 0:
            failed.append(f"{shlex.join(argv)}\n{out.stderr[-1500:]}")
    assert not failed, "\n\n".join(failed)
