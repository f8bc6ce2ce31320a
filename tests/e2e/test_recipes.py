"""The experiment configs: the published recipes are there, each trains a few steps, bad settings are refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import CONF_DIR, tiny_overrides, train_in_process

# ==================================================================================================
# Every experiment config composes and trains a few steps (tiny sizes, a local corpus: no download)
# ==================================================================================================
# Language-model experiments; the translation presets (translate_*) train in test_translation_e2e.py.
EXPERIMENTS = sorted(
    p.stem for p in (CONF_DIR / "experiment").glob("*.yaml") if not p.stem.startswith("translate_")
)


def test_the_published_recipes_are_there() -> None:
    assert {
        "pytorch_example",
        "pytorch_example_650_tied",
        "pytorch_example_1500_tied",
        "zaremba_small",
        "zaremba_medium",
        "zaremba_large",
        "awd_lstm_ptb",
        "awd_lstm_wt2",
        "tinyshakespeare_char",
    } <= set(EXPERIMENTS)
    for name in EXPERIMENTS:
        text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
        if name != "shakespeare_word_lstm" and not name.startswith(("bench_", "cells_")):
            assert "Published" in text, f"{name} must state the published figure it aims at"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_trains_a_few_steps(
    experiment: str, corpus_dir: Path, tmp_path: Path
) -> None:
    ppl = train_in_process(
        [
            f"experiment={experiment}",
            *tiny_overrides(corpus_dir),
            "data.tokenizer=word",
            "data.eval_batch_size=4",
            "model.last_hidden_dim=16",
            "model.adaptive_cutoffs=[4,8]",  # for the recipes with an adaptive softmax
            "model_budget=null",  # the cells presets: tiny like the rest (test_budget.py sizes them)
            "trainer.max_epochs=1",
            "test=false",
        ],
        tmp_path / "run",
    )
    assert math.isfinite(ppl)


# ==================================================================================================
# Config checks
# ==================================================================================================
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.tokenizer=bpe"], "data.vocab_size"),
        (["data.sha256=abc"], "data.sha256"),
        (["data.url=ftp://x/y.zip"], "data.url"),
        (["data.dataset=imagenet"], "data.dataset"),
        (["model.weight_drop=1.5"], "model.weight_drop"),
        (["optim=nt_asgd", "optim.nonmono=0"], "optim.nonmono"),
        (["optim=nt_asgd", "optim.average_after=1.5"], "optim.average_after"),
        (["model.adaptive_div_value=0"], "model.adaptive_div_value"),
    ],
)
def test_bad_quality_settings_are_refused(overrides: list[str], needle: str) -> None:
    from rnnlm.config.check import validate_overrides
    from rnnlm.errors import UserError

    with pytest.raises(UserError, match=needle.replace(".", r"\.")):
        validate_overrides("train", str(CONF_DIR), overrides)
