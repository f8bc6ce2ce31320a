"""The translation yardstick (bench/seq2seq_reference.py): the tutorial's normalisation, its filtered
subset, the multi-reference score, and a few seconds of the reference loop end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import seq2seq_reference as ref  # noqa: E402


def test_normalize_is_the_tutorials():
    assert ref.normalize("  Je suis désolé, c'est ça !  ") == "je suis desole c est ca !"
    assert ref.normalize("I'm 25. Are you?") == "i m are you ?"  # digits and . go, ! ? stay
    assert ref.normalize("Qu'est-ce que c'est ?") == ref.normalize("qu est ce que c est?")
    assert (
        ref.normalize(ref.normalize("Élan!! Vite."))
        == ref.normalize("Élan!! Vite.")
        == "elan ! ! vite"
    )


PAIRS = [
    ("I'm cold.", "J'ai froid ce matin."),
    ("I'm cold.", "J'ai très froid ce matin."),
    ("He's a teacher.", "Il est un bon enseignant."),
    ("She is a very very very very very very long sentence.", "Elle est longue."),  # 10 words
    ("Tom is here.", "Tom est ici."),  # no English prefix
    ("They're here.", "Ils sont ici avec nous."),
    ("They're here.", "Elles sont ici avec nous."),
]


def test_tutorial_subset_and_references():
    en_fr = ref.tutorial_subset(PAIRS, "en-fr")
    # raw text, the filter on the normalised form
    assert en_fr == [PAIRS[i] for i in (0, 1, 2, 5, 6)]
    fr_en = ref.tutorial_subset(PAIRS, "fr-en")
    assert fr_en == [(fr, en) for en, fr in en_fr]  # the same pairs, swapped
    assert ref.references_by_source(en_fr) == [
        ("I'm cold.", ["J'ai froid ce matin.", "J'ai très froid ce matin."]),
        ("He's a teacher.", ["Il est un bon enseignant."]),
        ("They're here.", ["Ils sont ici avec nous.", "Elles sont ici avec nous."]),
    ]
    assert len(ref.references_by_source(fr_en)) == 5  # one English target per French source
    with pytest.raises(ValueError, match="en-fr, fr-en"):
        ref.tutorial_subset(PAIRS, "en-de")


def test_score_multi_reference_in_the_normalised_form():
    pytest.importorskip("sacrebleu")
    items = ref.references_by_source(ref.tutorial_subset(PAIRS, "en-fr"))
    refs = [targets for _, targets in items]
    perfect = ref.score([targets[0] for targets in refs], refs)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    # lowercase ASCII without punctuation (the tutorial's own output) is not penalised
    lower = ["j ai froid ce matin", "il est un bon enseignant", "ils sont ici avec nous"]
    assert ref.score(lower, refs)["bleu"] == pytest.approx(100.0)
    # any one of a source's references counts: the second reference of each multi-reference source
    others = ["J'ai très froid ce matin.", "Il est un bon enseignant.", "Elles sont ici avec nous."]
    second = ref.score(others, refs)
    assert second["bleu"] == pytest.approx(100.0)
    # ... and only one reference per source would score the same hypotheses lower
    single = ref.score(others, [[r[0]] for r in refs])
    assert single["bleu"] < 100.0 and single["chrf"] < 100.0
    wrong = ref.score(["bonjour", "au revoir", "merci"], refs)
    assert wrong["bleu"] < 5.0
    with pytest.raises(ValueError):
        ref.score(["a"], [])


def _tsv(path: Path, pairs) -> Path:
    path.write_text("".join(f"{en}\t{fr}\n" for en, fr in pairs), encoding="utf-8")
    return path


@pytest.mark.parametrize("direction", ["en-fr", "fr-en"])
def test_reference_script_runs(tmp_path, direction):
    pytest.importorskip("sacrebleu")
    threads = torch.get_num_threads()
    train = [
        ("I am cold.", "J'ai froid."), ("I am tired.", "Je suis fatigué."),
        ("He is tired.", "Il est fatigué."), ("She is cold.", "Elle a froid."),
        ("We are tired.", "Nous sommes fatigués."), ("You are cold.", "Tu as froid."),
    ] * 8  # fmt: skip
    test = [("He is cold.", "Il a froid."), ("I am tired!", "Je suis fatiguée !"),
            ("I am tired!", "Je suis fatigué !"), ("They are new.", "Ils sont nouveaux.")]  # fmt: skip
    out = tmp_path / "ref.json"
    try:
        r = ref.main(
            ["--direction", direction, "--minutes", "0.05", "--train", str(_tsv(tmp_path / "train.tsv", train)),
             "--test", str(_tsv(tmp_path / "test.tsv", test)), "--threads", "1", "--json", str(out),
             "--translations", str(tmp_path / "tr.jsonl")]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert json.loads(out.read_text()) == r
    for key in ("bleu", "chrf", "sentences", "train_pairs", "test_pairs", "epochs", "steps",
                "seconds", "sentences_per_sec"):  # fmt: skip
        assert key in r, key
    assert r["direction"] == direction and r["train_pairs"] == 48 and r["test_pairs"] == 4
    assert r["sentences"] == (3 if direction == "en-fr" else 4)
    # 48 pairs in batches of 32: two steps an epoch
    assert r["steps"] >= 1 and r["epochs"] == pytest.approx(r["steps"] / 2)
    assert 2.5 <= r["seconds"] < 60 and r["sentences_per_sec"] > 0
    assert 0 <= r["bleu"] <= 100 and 0 <= r["chrf"] <= 100
    assert r["oov_source_words"] >= 1  # "new" / "nouveaux" was never seen in training: dropped
    lines = (tmp_path / "tr.jsonl").read_text().splitlines()
    assert len(lines) == r["sentences"] and "hypothesis" in json.loads(lines[0])


def test_the_translation_benchmark_runs_quick(tmp_path: Path) -> None:
    """bench/translation.py --quick: an rnnlm case trains, is scored on the full test split and on the
    tutorial's subset, and beam search is timed against greedy."""
    data = tmp_path / "pairs"
    data.mkdir()
    shared = ROOT.parent / "shared" / "data" / "tatoeba-eng-fra"
    for split, n in (("train", 200), ("valid", 40), ("test", 300)):
        with (shared / f"{split}.tsv").open(encoding="utf-8") as f:
            (data / f"{split}.tsv").write_text("".join(next(f) for _ in range(n)), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "bench/translation.py",
            "--quick",
            "--only",
            "attn",
            "--data",
            str(data),
            "--work",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(next((tmp_path / "work").glob("*/rows.json")).read_text())
    (row,) = rows["rows"]
    assert "failed" not in row["what"] and 0 <= row["test_bleu"] <= 100
    assert 0 <= row["subset_bleu"] <= 100
    assert [b["beam"] for b in rows["beam"]] == [1, 5]
