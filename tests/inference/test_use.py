"""Using trained models: eval, generate, score, resume and checkpoint errors (issue: use and compare)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import CONF_DIR, WORDS, run_script, run_train_script, write_corpus
from rnnlm import LanguageModel
from rnnlm.inference.checkpoint import CheckpointError, load_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One small word-level run (full splits scored) shared by the tests of this module."""
    root = tmp_path_factory.mktemp("use")
    corpus = write_corpus(root / "corpus", {"train": 300, "valid": 60, "test": 60})
    run = root / "run"
    out = run_train_script(
        [
            "data=text_files",
            f"data.path={corpus}",
            "data.tokenizer=word",
            "model=lstm",
            "model.hidden_dim=16",
            "model.embedding_dim=16",
            "data.batch_size=4",
            "data.bptt=8",
            "trainer.max_epochs=1",
            "callbacks.text_sample.max_new_tokens=5",
            f"hydra.run.dir={run}",
        ]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    test_ppl = float(re.search(r"test perplexity:\s+([0-9.]+)", out.stdout).group(1))
    return {
        "run": run,
        "ckpt": run / "checkpoints" / "best.ckpt",
        "corpus": corpus,
        "test_ppl": test_ppl,
    }


def test_eval_reproduces_training_test_perplexity(trained: dict, tmp_path: Path) -> None:
    out = run_script("eval", [f"ckpt_path={trained['ckpt']}", f"hydra.run.dir={tmp_path}"])
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    ppl = result["splits"]["test"]["ppl"]
    # training printed 3 decimals
    assert ppl == pytest.approx(trained["test_ppl"], rel=1e-4, abs=6e-4)
    assert result["splits"]["valid"]["tokens"] > 0 and "| test |" in out.stdout


@pytest.mark.parametrize(("splits", "named"), [(["valid", "tset"], "tset"), ([], "no split")])
def test_eval_splits_typo_is_one_clear_error(splits: list, named: str) -> None:
    from omegaconf import OmegaConf

    from rnnlm.errors import UserError
    from rnnlm.evaluate import evaluate

    cfg = OmegaConf.create({"eval": {"splits": splits}, "ckpt_path": "never-read.ckpt"})
    with pytest.raises(UserError, match=rf"eval.splits=.*{named}.*choose among train, valid, test"):
        evaluate(cfg)


@pytest.mark.parametrize(
    ("name", "named"), [("gpu", "device=gpu is not a device"), ("cuda:7", "device=cuda:7")]
)
def test_impossible_device_is_one_clear_error(name: str, named: str) -> None:
    from rnnlm.errors import UserError
    from rnnlm.inference.device import resolve_device

    with pytest.raises(UserError, match=re.escape(named)):
        resolve_device(name)


def test_eval_on_another_corpus_counts_unknown_words(trained: dict, tmp_path: Path) -> None:
    other = write_corpus(tmp_path / "other", words=[*WORDS, "zebra", "quokka"], seed=3)
    out = run_script(
        "eval",
        [
            f"ckpt_path={trained['ckpt']}",
            f"data.path={other}",
            "eval.batch_size=2",
            f"hydra.run.dir={tmp_path / 'e'}",
        ],
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert result["batch_size"] == 2
    assert result["splits"]["test"]["unknown_tokens"] > 0


@pytest.mark.parametrize(
    "method,args",
    [
        ("cache", ["cache.window=50", "cache.tune_on=valid"]),
        ("dynamic", ["dynamic.lr=0.1", "dynamic.tune_on=valid", "dynamic.lrs=[0.03,0.3]"]),
    ],
)
def test_eval_with_test_time_adaptation(
    trained: dict, tmp_path: Path, method: str, args: list[str]
) -> None:
    """cache.window / dynamic.lr turn an adaptation on; tune_on picks its settings on another split;
    the model alone is reported too, and is what training reported."""
    out = run_script(
        "eval",
        [f"ckpt_path={trained['ckpt']}", "eval.splits=[test]", *args, f"hydra.run.dir={tmp_path}"],
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    adaptation, test = result["adaptation"], result["splits"]["test"]
    assert adaptation["method"] == method and adaptation["tuned_on"] == "valid"
    name = {"cache": "continuous cache: window 50", "dynamic": "dynamic evaluation: lr "}[method]
    assert name in out.stdout and "model alone" in out.stdout
    assert test["ppl_static"] == pytest.approx(trained["test_ppl"], rel=1e-4, abs=6e-4)
    assert test["ppl"] != test["ppl_static"]
    if method == "dynamic":
        assert adaptation["lr"] in (0.03, 0.3)


def test_bad_adaptation_settings_are_one_line(trained: dict, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from rnnlm.errors import UserError
    from rnnlm.evaluate import scorer

    args = [f"ckpt_path={trained['ckpt']}", "cache.window=50", "cache.tune_on=dev"]
    out = run_script("eval", [*args, f"hydra.run.dir={tmp_path}"])
    assert out.returncode != 0 and "cache.tune_on='dev' is not a split" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    cfg = OmegaConf.load(CONF_DIR / "eval.yaml")
    cfg.cache.window, cfg.dynamic.lr = 50, 0.1
    with pytest.raises(UserError, match="cache.window and dynamic.lr are both set"):
        scorer(cfg, None, None, 4, 8)  # type: ignore[arg-type]
    cfg.dynamic.lr, cfg.cache.weight = 0.0, 1.5
    with pytest.raises(UserError, match=r"cache.weight=1.5 must be in \[0, 1\]"):
        scorer(cfg, None, None, 4, 8)  # type: ignore[arg-type]
    cfg.cache.window, cfg.dynamic.lr, cfg.dynamic.decay = 0, 0.1, -1.0
    with pytest.raises(UserError, match="dynamic.decay=-1.0 must be in"):
        scorer(cfg, None, None, 4, 8)  # type: ignore[arg-type]
    cfg.dynamic.lr, cfg.dynamic.decay = -0.1, 0.0  # negative: refused, not silently off
    with pytest.raises(UserError, match="dynamic.lr=-0.1 must be >= 0"):
        scorer(cfg, None, None, 4, 8)  # type: ignore[arg-type]
    cfg.dynamic.lr, cfg.cache.window, cfg.cache.weight = 0.0, -5, 0.1
    with pytest.raises(UserError, match="cache.window=-5 must be >= 1"):
        scorer(cfg, None, None, 4, 8)  # type: ignore[arg-type]


def test_char_model_reads_unseen_characters_as_unk(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c", {"train": 80, "valid": 20, "test": 20})
    run = tmp_path / "run"
    out = run_train_script(
        [
            "data=text_files",
            f"data.path={corpus}",
            "debug=smoke",
            "model.hidden_dim=8",
            "model.embedding_dim=8",
            "data.batch_size=2",
            "data.bptt=8",
            f"hydra.run.dir={run}",
        ]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    other = write_corpus(
        tmp_path / "o", {"train": 20, "valid": 20, "test": 20}, words=["ÉTÉ", "ÿes", "cat"]
    )
    ev = run_script(
        "eval",
        [
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            f"data.path={other}",
            f"hydra.run.dir={tmp_path / 'e'}",
        ],
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert result["splits"]["valid"]["unknown_tokens"] > 0 and "bpc" in result["splits"]["valid"]
    gen = run_script(
        "generate",
        [
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            "prompt='ÉTÉ'",
            "max_new_tokens=5",
            "seed=1",
        ],
    )
    assert gen.returncode == 0 and gen.stdout.startswith("ÉTÉ"), gen.stderr[-1000:]


def test_generate_is_repeatable_and_greedy_is_deterministic(trained: dict) -> None:
    lm = LanguageModel.load(trained["ckpt"])
    a = lm.generate("the cat", max_new_tokens=12, temperature=0.8, top_k=5, top_p=0.9, seed=1)
    b = lm.generate("the cat", max_new_tokens=12, temperature=0.8, top_k=5, top_p=0.9, seed=1)
    assert a == b and a.startswith("the cat")
    assert lm.generate("the", 10, temperature=0, seed=1) == lm.generate(
        "the", 10, temperature=0, seed=2
    )
    pieces: list[str] = []
    streamed = lm.generate("a", 6, seed=3, on_text=pieces.append)
    assert streamed == "a" + "".join(pieces) and len(pieces) == 6


def test_generate_script_streams_samples(trained: dict) -> None:
    args = [
        f"ckpt_path={trained['ckpt']}",
        "prompt=the dog",
        "max_new_tokens=8",
        "num_samples=2",
        "seed=1",
        "temperature=0.8",
        "top_k=50",
        "top_p=0.95",
    ]
    first, second = run_script("generate", args), run_script("generate", args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout == second.stdout
    assert first.stdout.count("--- sample") == 2 and "the dog" in first.stdout


def test_score_agrees_with_eval(trained: dict) -> None:
    lm = LanguageModel.load(trained["ckpt"])
    text = (trained["corpus"] / "test.txt").read_text()
    score = lm.score(text)
    ids = torch.tensor(lm.tokenizer.encode(text))
    nll, count = lm.evaluate_stream(ids, batch_size=1, bptt=len(ids) - 1)
    assert count == len(score.logprobs)
    assert score.perplexity == pytest.approx(torch.tensor(nll / count).exp().item(), rel=1e-5)
    assert all(lp <= 0 for lp in score.logprobs)


def test_resume_continues_epochs_and_tensorboardrun_script(trained: dict, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    before = load_checkpoint(run / "checkpoints" / "last.ckpt")
    out = run_train_script([f"resume={run}", "trainer.max_epochs=2"])
    assert out.returncode == 0, out.stderr[-2000:]
    after = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert after["epoch"] == before["epoch"] + 1 and after["global_step"] > before["global_step"]
    assert len(list((run / "tensorboard").iterdir())) == 1  # no second TensorBoard run
    assert json.loads((run / "result.json").read_text())["status"] == "finished"
    assert str(run) in out.stdout


def test_resume_latest_without_runs_is_one_line(tmp_path: Path) -> None:
    out = run_train_script(["resume=latest"], env={"RNNLM_OUTPUT_DIR": str(tmp_path / "empty")})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: resume=latest found no run")


@pytest.mark.parametrize("kind", ["missing", "not_a_checkpoint", "foreign"])
def test_bad_checkpoint_paths_are_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.ckpt"
    if kind == "not_a_checkpoint":
        path.write_text("hello")
    elif kind == "foreign":
        torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    out = run_script("generate", [f"ckpt_path={path}"])
    assert out.returncode == 2
    msg = out.stderr.strip().splitlines()[-1]
    assert msg.startswith("error:") and str(path) in msg and "Traceback" not in out.stderr
