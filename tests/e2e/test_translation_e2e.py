"""Translation through the real entry points, at tiny sizes: each preset trains, validates with BLEU and
chrF and tests; the checkpoint translates (src/translate.py, Translator), scores (src/eval.py) and is
refused where a language model is expected; bad decoding settings are refused in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_script, run_train_script_cases, tiny_overrides, write_corpus

SHARED = REPO_ROOT.parent / "shared" / "data" / "tatoeba-eng-fra"
TINY = [
    "debug=smoke",
    "data.batch_size=8",
    "decode.val_sentences=12",
    "decode.beam_size=2",
    "trainer.max_time=null",
    "callbacks.time_budget.enabled=false",
]
SIZES = {
    "translate_attn": ["model.embedding_dim=16", "model.hidden_dim=16"],
    "translate_lm": ["model.embedding_dim=16", "model.hidden_dim=16"],
    "translate_transformer": [
        "model.d_model=16",
        "model.nhead=2",
        "model.dim_feedforward=32",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
    ],
}


def write_pairs(folder: Path, lines: dict[str, int] | None = None) -> Path:
    """The first lines of each split of the shared Tatoeba copy (never copied into the repo)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (lines or {"train": 120, "valid": 40, "test": 40}).items():
        with (SHARED / f"{split}.tsv").open(encoding="utf-8") as f:
            head = [next(f) for _ in range(n)]
        (folder / f"{split}.tsv").write_text("".join(head), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every translation preset (and a French -> English run, a conditional LM over a parallel cell,
    a tiny language model) trained once, each through src/train.py in its own process."""
    root = tmp_path_factory.mktemp("translation")
    pairs = write_pairs(root / "pairs")
    corpus = write_corpus(root / "corpus")
    cases = {
        name: [f"experiment={name}", f"data.path={pairs}", *TINY, *sizes]
        for name, sizes in SIZES.items()
    }
    cases["fr_en"] = [*cases["translate_attn"], "data.direction=fr-en", "model.attention=luong"]
    cases["lm_mingru"] = [*cases["translate_lm"], "model=mingru"]
    cases["lm"] = [*tiny_overrides(corpus), "data.tokenizer=word"]
    for name, args in cases.items():
        args.append(f"hydra.run.dir={root / name}")
    done = run_train_script_cases(cases, root / "logs", timeout=900)
    for name, proc in done.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    return {name: root / name for name in cases}


@pytest.mark.parametrize("name", [*SIZES, "fr_en", "lm_mingru"])
def test_each_preset_trains_and_reports_bleu(runs: dict[str, Path], name: str) -> None:
    result = json.loads((runs[name] / "result.json").read_text())
    assert result["status"] == "finished"
    for key in ("best_val_bleu", "val_bleu", "val_chrf", "test_bleu", "test_chrf", "test_ppl"):
        assert math.isfinite(result[key]), key
    assert 0 <= result["test_bleu"] <= 100 and 0 <= result["test_chrf"] <= 100
    history = [json.loads(line) for line in (runs[name] / "validations.jsonl").open()]
    assert history and all("val_bleu" in row for row in history)


def test_tensorboard_shows_bleu_and_the_translations(runs: dict[str, Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = next((runs["translate_attn"] / "tensorboard").iterdir())  # the run's own folder
    events = EventAccumulator(str(run), size_guidance={"tensors": 0})
    events.Reload()
    assert {"val/bleu", "val/chrf"} <= set(events.Tags()["scalars"])
    samples = [t for t in events.Tags()["tensors"] if "samples" in t]
    assert samples, events.Tags()
    text = events.Tensors(samples[0])[-1].tensor_proto.string_val[0].decode()
    assert "->" in text and "reference" in text


def test_translate_one_sentence_and_a_file(runs: dict[str, Path], tmp_path: Path) -> None:
    ckpt = runs["translate_attn"] / "checkpoints" / "best.ckpt"
    one = run_script("translate", [f"ckpt_path={ckpt}", "text=Where is the station?"])
    assert one.returncode == 0, one.stderr[-2000:]
    assert len(one.stdout.strip().splitlines()) == 1
    lines = tmp_path / "in.txt"
    lines.write_text("Hi.\nI am cold.\nWhere is the station?\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    done = run_script(
        "translate", [f"ckpt_path={ckpt}", f"input={lines}", f"output={out}", "batch_size=2"]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3


def test_eval_prints_bleu_and_chrf(runs: dict[str, Path], tmp_path: Path) -> None:
    ckpt = runs["translate_attn"] / "checkpoints" / "best.ckpt"
    done = run_script(
        "eval", [f"ckpt_path={ckpt}", "decode.beam_size=1", f"hydra.run.dir={tmp_path}"]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "BLEU" in done.stdout and "chrF" in done.stdout
    scores = json.loads((tmp_path / "eval.json").read_text())["splits"]
    assert set(scores) == {"valid", "test"}
    assert all(0 <= s["bleu"] <= 100 and math.isfinite(s["ppl"]) for s in scores.values())


def test_the_translator_api_and_the_hub_format(runs: dict[str, Path], tmp_path: Path) -> None:
    from rnnlm import LanguageModel, Translator
    from rnnlm.inference.hub import PretrainedError

    t = Translator.load(runs["translate_attn"] / "checkpoints" / "best.ckpt")
    texts = ["Hi.", "I am cold.", "Where is the station?"]
    greedy = t.translate(texts, beam_size=1)
    assert len(greedy) == 3 and all(isinstance(s, str) for s in greedy)
    assert list(t.stream(iter(texts), batch_size=2, beam_size=1)) == greedy
    folder = t.save_pretrained(tmp_path / "hub")
    assert Translator.load(folder).translate(texts, beam_size=1) == greedy
    with pytest.raises(PretrainedError, match="translation model"):
        LanguageModel.load(folder)


def test_export_hub_writes_a_folder_the_translator_reads(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    from rnnlm import Translator

    ckpt = runs["translate_attn"] / "checkpoints" / "best.ckpt"
    done = run_script("export", ["hub", f"ckpt_path={ckpt}", f"out={tmp_path / 'hub'}"])
    assert done.returncode == 0, done.stderr[-2000:]
    texts = ["Hi.", "Where is the station?"]
    want = Translator.load(ckpt).translate(texts, beam_size=2)
    assert Translator.load(tmp_path / "hub").translate(texts, beam_size=2) == want


@pytest.mark.parametrize(
    ("script", "which", "needle"),
    [
        ("generate", "translate_attn", "is a translation checkpoint"),
        ("translate", "lm", "is a language-model checkpoint"),
    ],
)
def test_each_command_refuses_the_other_kind_of_checkpoint(
    runs: dict[str, Path], script: str, which: str, needle: str
) -> None:
    ckpt = runs[which] / "checkpoints" / "best.ckpt"
    args = [f"ckpt_path={ckpt}"] + (["text=Hi."] if script == "translate" else [])
    done = run_script(script, args)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr[-2000:]


@pytest.mark.parametrize(
    ("script", "args", "needle"),
    [
        ("translate", ["beam_size=0", "text=Hi."], "beam_size=0"),
        ("translate", [], "give one of text="),
        ("train", ["experiment=translate_attn", "decode.beam_size=0"], "decode.beam_size=0"),
        ("train", ["experiment=translate_attn", "data.direction=de-fr"], "de-fr"),
        ("train", ["experiment=translate_attn", "model.attention=dot"], "attention"),
    ],
)
def test_bad_settings_are_refused_in_one_line(
    runs: dict[str, Path], script: str, args: list[str], needle: str
) -> None:
    if script == "translate":
        args = [f"ckpt_path={runs['translate_attn'] / 'checkpoints' / 'best.ckpt'}", *args]
    done = run_script(script, args)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr[-2000:]


# -- the documented commands (docs/translation.md and the README's translation lines) --------------------
DOCS = [REPO_ROOT / "docs" / "translation.md", REPO_ROOT / "README.md"]
TRANSLATION = ("experiment=translate_", "data=pairs", "data=tatoeba_eng_fra", "src/translate.py")


def documented_commands(paths: dict[str, str]) -> list[list[str]]:
    """The translation commands of the docs' ```bash blocks, placeholders filled."""
    import re
    import shlex

    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                if not any(k in line for k in TRANSLATION) and "<translation ckpt>" not in line:
                    continue
                for placeholder, value in paths.items():
                    line = line.replace(placeholder, value)
                found.append(shlex.split(line, comments=True))
    return found


def _placeholders(root: Path, ckpt: Path) -> dict[str, str]:
    jsonl = root / "jsonl"
    jsonl.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        rows = []
        for line in (SHARED / f"{split}.tsv").open(encoding="utf-8"):
            en, fr = line.rstrip("\n").split("\t")
            rows.append(json.dumps({"document": en, "summary": fr}))
            if len(rows) == 40:
                break
        (jsonl / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    sentences = root / "sentences.txt"
    sentences.write_text("Hi.\nI am cold.\n", encoding="utf-8")
    return {
        "<translation ckpt>": str(ckpt),
        "<sentences file>": str(sentences),
        "<translations file>": str(root / "translations.txt"),
        "<jsonl folder>": str(jsonl),
    }


def test_the_docs_show_every_translation_command() -> None:
    commands = documented_commands({})
    scripts = {Path(a[1]).stem for a in commands if a[0] == "python"}
    assert {"train", "translate", "eval"} <= scripts
    assert any("-m" in a for a in commands)


def test_every_documented_translation_command_passes_the_front_door(tmp_path: Path) -> None:
    from rnnlm.config import CONF_DIR
    from rnnlm.config.check import plain_target_keys, validate_overrides

    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"")  # the config check does not open it
    for argv in documented_commands(_placeholders(tmp_path, ckpt)):
        assert argv[0] == "python" and argv[1].startswith("src/"), argv
        name = Path(argv[1]).stem
        args = plain_target_keys(name, CONF_DIR, [a for a in argv[2:] if a != "-m"])
        # a sweep's first value (every job composes the same way here)
        validate_overrides(name, CONF_DIR, [a.split(",")[0] for a in args])


@pytest.mark.slow
def test_every_documented_translation_command_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    paths = _placeholders(tmp_path, runs["translate_attn"] / "checkpoints" / "best.ckpt")
    pairs = write_pairs(tmp_path / "pairs")
    failed = []
    for n, argv in enumerate(documented_commands(paths)):
        name = Path(argv[1]).stem
        args = argv[2:]
        if "data=tatoeba_eng_fra" in args:
            continue  # a download (tests/data/test_pairs.py downloads it from a file:// URL)
        if name == "train":
            preset = next((a.split("=")[1] for a in args if a.startswith("experiment=")), "")
            sizes = SIZES.get(preset, SIZES["translate_attn"])
            if any(a.startswith("model=") for a in args):
                sizes = SIZES["translate_lm"]
            given = {a.split("=")[0] for a in args}
            extra = [a for a in [*TINY, *sizes] if a.split("=")[0] not in given]
            if not any(a.startswith("data.path=") for a in args):
                extra.append(f"data.path={pairs}")
            folder = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
            args = [*args, *extra, f"{folder}={tmp_path / f'run{n}'}"]
        done = run_script(name, args, timeout=600)
        if done.returncode != 0:
            failed.append(f"{' '.join(argv)}\n{done.stderr[-1500:]}")
    assert not failed, "\n\n".join(failed)
