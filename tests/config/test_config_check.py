"""Config validation before anything runs (src/rnnlm/config/check.py) and the shared ranges (rnnlm/schema.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CONF_DIR, run_train_script, tiny_overrides
from rnnlm.config.check import hydra_list, plain_target_keys, validate_overrides
from rnnlm.errors import UserError

CASES = [
    (
        ["model.hiden_dim=5"],
        "model.hiden_dim=5 is not a known key of model; did you mean model.hidden_dim?",
    ),
    (
        ["+model.hiden_dim=5"],
        "model.hiden_dim=5 is not a known key of model; did you mean model.hidden_dim?",
    ),
    (["+trainer.max_epoch=3"], "did you mean trainer.max_epochs?"),
    (["+sed=3"], "sed=3 is not a known key of the top level; did you mean seed?"),
    (["model.hidden_dim=abc"], "model.hidden_dim='abc' has the wrong type: expected an integer"),
    (
        ["model.tie_weights=maybe"],
        "model.tie_weights='maybe' has the wrong type: expected a boolean",
    ),
    (["optim.lr=-1"], "optim.lr=-1 must be > 0"),
    (["optim.lr=0"], "optim.lr=0 must be > 0"),
    (["model.dropout=1.0"], "model.dropout=1.0 must be in [0, 1)"),
    (["model.dropout=-0.1"], "model.dropout=-0.1 must be in [0, 1)"),
    (["model.num_layers=0"], "model.num_layers=0 must be an integer >= 1"),
    (["model.hidden_dim=-4"], "model.hidden_dim=-4 must be an integer >= 1"),
    (["data.bptt=0"], "data.bptt=0 must be an integer >= 1"),
    (["data.batch_size=0"], "data.batch_size=0 must be an integer >= 1"),
    (["data.max_vocab=0"], "data.max_vocab=0 must be null (no limit) or >= 3"),
    (["optim=sgd", "optim.momentum=1.5"], "optim.momentum=1.5 must be in [0, 1)"),
    (
        ["model.tie_weights=true", "model.embedding_dim=16", "model.hidden_dim=32"],
        "model.tie_weights=true needs model.embedding_dim == model.hidden_dim (got 16 and 32)",
    ),
    (["model=foo"], "Could not find 'model/foo'; available options: gru, hawk, lstm"),
    # a top-level key without `+`: Hydra refuses it, and the message still names the closest key
    (["lr=0.1"], "lr=0.1 is not a known key of the top level"),
    (["sed=3"], "sed=3 is not a known key of the top level; did you mean seed?"),
    # top-level values are typed like the others: 'no' is not false
    (["test=no"], "test='no' has the wrong type: expected a boolean"),
    (["compile=off"], "compile='off' has the wrong type: expected a boolean"),
    (["optimized_metric=test/ppl"], "optimized_metric='test/ppl' must be val/best_ppl"),
    (["data=text_files"], "data.path is required"),
    (["+model.vocab_size=5"], "model.vocab_size=5 is set by rnnlm itself when it builds model"),
    (["scheduler=delayed_exp", "scheduler.gamma=0"], "scheduler.gamma=0 must be in (0, 1]"),
]


@pytest.mark.parametrize(("overrides", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_overrides_are_rejected_with_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(UserError) as err:
        validate_overrides("train", str(CONF_DIR), overrides)
    text = str(err.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["model=lstm", "optim=sgd", "optim.momentum=0.9", "scheduler=plateau"],
        ["+trainer.profiler=simple", "+trainer.limit_train_batches=5"],  # real Trainer arguments
        ["data.max_vocab=null", "data.eval_batch_size=8", "optim.lr=1"],  # an int where a float is
        ["experiment=shakespeare_word_lstm", "debug=smoke"],
        ["seed=0"],
    ],
)
def test_good_overrides_pass(overrides: list[str]) -> None:
    validate_overrides("train", str(CONF_DIR), overrides)


def test_a_target_argument_needs_no_plus() -> None:
    """`trainer.max_steps=3` is a Trainer argument its config file leaves out: it gets Hydra's `+`."""
    args = ["trainer.limit_train_batches=5", "trainer.max_steps=3", "-m", "optim.lr=0.1,0.2"]
    plain = plain_target_keys("train", str(CONF_DIR), args)
    assert plain == ["+trainer.limit_train_batches=5", "+trainer.max_steps=3", *args[2:]]
    validate_overrides("train", str(CONF_DIR), plain[:2])
    assert plain_target_keys("train", str(CONF_DIR), ["+trainer.max_steps=3"]) == [
        "+trainer.max_steps=3"
    ]
    # not an argument of the Trainer: left alone, and the check names the closest key
    typo = plain_target_keys("train", str(CONF_DIR), ["trainer.max_step=3"])
    assert typo == ["trainer.max_step=3"]
    with pytest.raises(UserError, match=r"did you mean trainer.max_steps\?"):
        validate_overrides("train", str(CONF_DIR), typo)
    # an argument rnnlm passes itself stays refused
    assert plain_target_keys("train", str(CONF_DIR), ["trainer.callbacks=[]"]) == [
        "trainer.callbacks=[]"
    ]


def test_a_quoted_json_array_is_a_list() -> None:
    """`eval.splits='["valid", "test"]'` (JSON in quotes) reaches Hydra as the list it stands for;
    strings keep every character; a quoted value of a key that takes no list stays a string."""
    conf = str(CONF_DIR)
    plain = plain_target_keys(
        "eval", conf, ["ckpt_path=x.ckpt", """eval.splits='["valid", "test"]'"""]
    )
    assert plain == ["ckpt_path=x.ckpt", "eval.splits=['valid','test']"]
    validate_overrides("eval", conf, plain)
    cutoffs = plain_target_keys("train", conf, ['model.adaptive_cutoffs="[20, 60]"'])
    assert cutoffs == ["model.adaptive_cutoffs=[20,60]"]
    prompt = plain_target_keys("generate", conf, ["ckpt_path=x.ckpt", """prompt='["a"]'"""])
    assert prompt[1] == """prompt='["a"]'"""  # a string key keeps its string
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = ["it's", "a\\b", "end\\", 1, 2.5, None, True, "x,y"]
    parsed = OverridesParser.create().parse_override(f"k={hydra_list(values)}").value()
    assert parsed == values


def test_a_plain_trainer_key_reaches_the_trainer(corpus_dir: Path, tmp_path: Path) -> None:
    """Through the real entry point: the run stops at trainer.max_steps, typed without `+`."""
    run = tmp_path / "run"
    out = run_train_script(
        [*tiny_overrides(corpus_dir), "trainer.max_steps=2", "test=false", f"hydra.run.dir={run}"]
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((run / "result.json").read_text())["steps"] == 2


def test_eval_and_generate_configs_are_checked_too() -> None:
    validate_overrides("generate", str(CONF_DIR), ["ckpt_path=x.ckpt", "temperature=0"])
    with pytest.raises(UserError, match="ckpt_path is required"):
        validate_overrides("eval", str(CONF_DIR), [])
    with pytest.raises(UserError, match="did you mean top_k"):
        validate_overrides("generate", str(CONF_DIR), ["ckpt_path=x", "+topk=5"])


def test_rejected_run_creates_nothing(tmp_path: Path) -> None:
    out_root = tmp_path / "outputs"
    result = run_train_script(["+model.hiden_dim=5"], env={"RNNLM_OUTPUT_DIR": str(out_root)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: config: model.hiden_dim=5 is not a known key of model; did you mean model.hidden_dim?"
    ]
    assert not out_root.exists()


def test_eval_and_generate_ranges_come_from_the_shared_table() -> None:
    with pytest.raises(UserError, match=r"temperature=-1 must be >= 0 \(0 is greedy decoding\)"):
        validate_overrides("generate", str(CONF_DIR), ["ckpt_path=x", "temperature=-1"])
    with pytest.raises(UserError, match=r"cache.weight=1.5 must be in \[0, 1\]"):
        validate_overrides("eval", str(CONF_DIR), ["ckpt_path=x", "cache.weight=1.5"])


def test_the_code_and_the_check_refuse_a_value_in_the_same_words() -> None:
    """One table: the model's own ValueError and the pre-start check name the same range."""
    from rnnlm.models import RNNLM

    with pytest.raises(ValueError) as from_code:
        RNNLM(vocab_size=10, embedding_dim=4, hidden_dim=4, dropout=1.0)
    with pytest.raises(UserError) as from_check:
        validate_overrides("train", str(CONF_DIR), ["model.dropout=1.0"])
    assert str(from_code.value) == "model.dropout=1.0 must be in [0, 1)"
    assert str(from_check.value) == f"config: {from_code.value}"


def test_every_ranged_key_is_a_key_of_some_config() -> None:
    """A rule for a key no config has would never run before a start: the table must not rot."""
    from omegaconf import OmegaConf

    from rnnlm.config.keys import RULES

    leaves: set[str] = set()

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
                leaves.add(f"{prefix}{k}")

    for path in CONF_DIR.rglob("*.yaml"):
        tree = OmegaConf.to_container(OmegaConf.load(path))
        group = path.parent.relative_to(CONF_DIR).parts
        walk(
            tree,
            f"{group[0]}."
            if group and group[0] in {"model", "optim", "data", "scheduler", "trainer"}
            else "",
        )
    # computed by the code (vocab_size), or RNNLM arguments a user adds with `+model.<key>=`
    code_only = {"model.vocab_size", "model.forget_bias", "model.adaptive_div_value"}
    assert set(RULES) - leaves - code_only == set()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            [
                "model=lstm",
                "model.sparse_embedding=true",
                "model.tie_weights=true",
                "model.embedding_dim=256",
            ],
            "model.sparse_embedding=true cannot be combined",
        ),
        (["model.forget_bias=1.0"], "model.forget_bias=1.0 applies to LSTM cells only"),
        (["model.softmax=adaptive"], "model.softmax=adaptive needs model.adaptive_cutoffs"),
    ],
)
def test_rules_across_keys_are_checked_before_the_start(overrides: list[str], message: str) -> None:
    """The model's own cross-key rules (rnnlm/models/rules.py) run in the pre-start check too."""
    with pytest.raises(UserError, match=message):
        validate_overrides("train", str(CONF_DIR), overrides)
