"""Translation pairs: reading (TSV, JSONL, HF), bad input, direction, tokenizers, batches, references,
the length cap, and the Tatoeba corpus by name (downloaded from a file:// zip)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import CONF_DIR, REPO_ROOT
from rnnlm.config.check import validate_overrides
from rnnlm.data.download import DownloadError, prepare_dataset
from rnnlm.data.pair_batches import LengthBatches
from rnnlm.data.pair_datamodule import PairDataModule
from rnnlm.data.pairs import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIALS,
    UNK_ID,
    PairTokenizer,
    SideTokenizer,
    tatoeba_split,
)
from rnnlm.errors import UserError

SHARED = REPO_ROOT.parent / "shared" / "data" / "tatoeba-eng-fra"
PAIRS = {
    "train": [
        ("Hello.", "Bonjour."),
        ("I see.", "Je vois."),
        ("Run!", "Cours\u202f!"),
        ("Run!", "Courez\u202f!"),
        ("The cat sat on the mat.", "Le chat s'est assis sur le tapis."),
        ("Where is the station?", "Où est la gare\u202f?"),
    ],
    "valid": [("I see.", "Je comprends."), ("Hello.", "Salut.")],
    "test": [
        ("Run!", "Cours\u202f!"),
        ("Hello.", "Bonjour."),
        ("Run!", "Fuyez\u202f!"),
        ("Run!", "Courez\u202f!"),
    ],
}


def _write(folder: Path, fmt: str = "tsv", pairs: dict = PAIRS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in pairs.items():
        with open(folder / f"{split}.{fmt}", "w", encoding="utf-8") as f:
            for en, fr in rows:
                if fmt == "tsv":
                    f.write(f"{en}\t{fr}\n")
                else:
                    f.write(json.dumps({"source": en, "target": fr, "id": 1}) + "\n")
    return folder


@pytest.fixture
def tsv(tmp_path: Path) -> Path:
    return _write(tmp_path / "tsv")


def _dm(path: Path, **kw: object) -> PairDataModule:
    return PairDataModule(path=str(path), **{"batch_size": 2, **kw})


# -- reading and bad input ----------------------------------------------------------------------------
def test_tsv_and_jsonl_give_the_same_pairs(tmp_path: Path) -> None:
    a = _dm(_write(tmp_path / "a")).texts()
    b = _dm(_write(tmp_path / "b", "jsonl"), format="jsonl").texts()
    assert a == b
    assert a["train"][0][2] == "Run!" and a["train"][1][2] == "Cours\u202f!"


def test_direction_swaps_the_sides(tsv: Path) -> None:
    en_fr = _dm(tsv, direction="en-fr").texts()
    fr_en = _dm(tsv, direction="fr-en").texts()
    for split in en_fr:
        assert fr_en[split] == en_fr[split][::-1]
    assert _dm(tsv, direction=None).texts() == en_fr  # file order


def test_fingerprint_follows_content_and_direction(tsv: Path, tmp_path: Path) -> None:
    def fp(path: Path, **kw: object) -> str:
        dm = _dm(path, **kw)
        dm.texts()
        return dm.corpus_fingerprint

    assert fp(tsv) == fp(_write(tmp_path / "copy"))
    assert fp(tsv) != fp(tsv, direction="fr-en")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("no tab here", r"train.tsv:2 has no tab: .*fix or delete the line"),
        ("\tBonjour.", r"train.tsv:2 has an empty first side"),
        ("Hello.\t  ", r"train.tsv:2 has an empty second side"),
    ],
)
def test_bad_tsv_line_names_file_and_line(tsv: Path, line: str, message: str) -> None:
    (tsv / "train.tsv").write_text(f"Hi.\tSalut.\n{line}\n", encoding="utf-8")
    with pytest.raises(UserError, match=message) as err:
        _dm(tsv).load()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"source": "Hi."}',
            r"train.jsonl:2 has no field 'target' \(its fields: source\): set data.target_field",
        ),
        (
            '{"src": "Hi.", "target": "x"}',
            r"train.jsonl:2 has no field 'source' .*set data.source_field",
        ),
        ('{"source": "", "target": "x"}', r"train.jsonl:2 has an empty or non-text field 'source'"),
        ("not json", r"train.jsonl:2 is not JSON"),
        ('["a", "b"]', r"train.jsonl:2 is not a JSON object"),
    ],
)
def test_bad_jsonl_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    folder = _write(tmp_path / "j", "jsonl")
    (folder / "train.jsonl").write_text('{"source": "a", "target": "b"}\n' + line + "\n")
    with pytest.raises(UserError, match=message) as err:
        _dm(folder, format="jsonl").load()
    assert "\n" not in str(err.value)


def test_jsonl_field_names_and_nested_fields(tmp_path: Path) -> None:
    folder = tmp_path / "nested"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        row = {"translation": {"en": "Hi.", "fr": "Salut."}}
        (folder / f"{split}.jsonl").write_text(json.dumps(row) + "\n")
    dm = _dm(folder, format="jsonl", source_field="translation.en", target_field="translation.fr")
    assert dm.texts()["test"] == (["Hi."], ["Salut."])


def test_settings_the_data_does_not_have_are_refused(tsv: Path) -> None:
    with pytest.raises(UserError, match=r"data.direction=de-fr: .* en and fr .*use en-fr or fr-en"):
        _dm(tsv, direction="de-fr")
    with pytest.raises(UserError, match=r"data.languages=\['en', 'en'\]"):
        _dm(tsv, languages=["en", "en"], direction=None)
    with pytest.raises(UserError, match=r"data.format=csv is not a pairs format"):
        _dm(tsv, format="csv")
    with pytest.raises(UserError, match=r"data.tokenizer=byte is not a tokenizer of pairs"):
        _dm(tsv, tokenizer="byte")
    with pytest.raises(UserError, match=r"lacks train.jsonl.*set data.format=tsv"):
        _dm(tsv, format="jsonl").load()
    with pytest.raises(UserError, match=r"is not a folder: point it at a folder holding train.tsv"):
        _dm(tsv / "nowhere").load()
    with pytest.raises(UserError, match=r"no pairs to read: set data.path"):
        PairDataModule().load()
    with pytest.raises(UserError, match=r"data.dataset=wikitext2 is a language-model corpus"):
        PairDataModule(dataset="wikitext2").load()


def test_config_check_refuses_before_any_run(tsv: Path) -> None:
    conf = str(CONF_DIR)
    validate_overrides("train", conf, ["data=pairs", f"data.path={tsv}"])
    with pytest.raises(UserError, match=r"did you mean data.direction\?"):
        validate_overrides("train", conf, ["data=pairs", f"data.path={tsv}", "data.directon=en-fr"])
    with pytest.raises(UserError, match=r"data.direction=en-de"):
        validate_overrides(
            "train", conf, ["data=pairs", f"data.path={tsv}", "data.direction=en-de"]
        )
    with pytest.raises(UserError, match=r"data.path is required"):
        validate_overrides("train", conf, ["data=pairs"])
    validate_overrides("train", conf, ["data=tatoeba_eng_fra"])
    # As users see it: one line, exit status 2, before Hydra makes an output folder.
    out = subprocess.run(
        [sys.executable, "src/train.py", "data=pairs", "data.path=/nonexistent"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1 and "data.path=/nonexistent is not a folder" in lines[0]


# -- tokenizers ---------------------------------------------------------------------------------------
TEXTS = [
    "Où est la gare\u202f?",
    "Le chat s'est assis  sur le tapis. ",
    "Run!",
    "«\xa0Oui\xa0», dit-il.",
]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_side_tokenizer_round_trips_and_serialises(kind: str) -> None:
    tok = SideTokenizer.train(kind, TEXTS * 3, vocab_size=300)
    assert tuple(tok.itos[:4]) == SPECIALS
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    for text in TEXTS:
        ids = tok.encode(text)
        assert min(ids) > UNK_ID  # in vocabulary: no specials, no BOS/EOS added
        assert tok.decode(ids) == text
        assert tok.decode([BOS_ID, *ids, EOS_ID, *ids, PAD_ID]) == text  # stops at EOS
        assert tok.decode([*ids, PAD_ID, PAD_ID]) == text
    state = json.loads(json.dumps(tok.to_dict()))
    again = SideTokenizer.from_dict(state)
    assert again.itos == tok.itos and again.encode(TEXTS[0]) == tok.encode(TEXTS[0])
    assert tok.encode_many(TEXTS) == [tok.encode(t) for t in TEXTS]


def test_word_tokens_split_punctuation_and_mark_spaces() -> None:
    tok = SideTokenizer.train("word", ["Le chat, le chien."])
    assert tok.tokenize("Le chat, le chien.") == ["Le", "▁chat", ",", "▁le", "▁chien", "."]
    assert tok.encode("Le zèbre.")[1] == UNK_ID
    assert tok.decode(tok.encode("Le zèbre.")) == "Le<unk>."


def test_vocabulary_limits() -> None:
    lines = ["a a a b b c"]
    assert SideTokenizer.train("word", lines, min_freq=2).itos[4:] == ["▁a", "▁b"]
    assert SideTokenizer.train("word", lines, max_vocab=5).vocab_size == 5
    assert SideTokenizer.train("char", ["aab"], min_freq=2).itos == [*SPECIALS, "a"]
    with pytest.raises(UserError, match="data.vocab_size=100: tokenizer=bpe needs"):
        SideTokenizer.train("bpe", lines, vocab_size=100)
    with pytest.raises(UserError, match="max_vocab > 4"):
        SideTokenizer.train("word", lines, max_vocab=4)


def test_shared_and_separate_vocabularies() -> None:
    src, tgt = ["the cat", "a dog"], ["le chat", "un chien"]
    sep = PairTokenizer.train("word", src, tgt)
    assert not sep.shared and sep.source is not sep.target
    assert "▁chat" in sep.target.stoi and "▁chat" not in sep.source.stoi
    shared = PairTokenizer.train("word", src, tgt, shared=True)
    assert shared.shared and shared.source is shared.target
    assert {"▁chat", "▁cat"} <= set(shared.source.stoi)
    for tok in (sep, shared):
        state = json.loads(json.dumps(tok.to_dict()))
        assert state["kind"] == "pairs"
        again = PairTokenizer.from_dict(state)
        assert again.shared == tok.shared and (again.source is again.target) == tok.shared
        assert again.target.itos == tok.target.itos and again.source.itos == tok.source.itos
    with pytest.raises(UserError, match="holds a language model, not a translation model"):
        PairTokenizer.from_dict({"kind": "char", "itos": ["<unk>", "a"]})


def test_datamodule_takes_a_checkpoint_tokenizer(tsv: Path) -> None:
    dm = _dm(tsv, tokenizer="char", shared_vocab=True)
    state = dm.load().to_dict()
    again = _dm(tsv, tokenizer_state=state)
    assert again.load().source.itos == dm.load().source.itos and again.load().shared


# -- batches ------------------------------------------------------------------------------------------
def test_batches_are_padded_dicts_with_eos_targets(tsv: Path) -> None:
    dm = _dm(tsv, batch_size=3, eval_batch_size=4, bucket=False)
    tok = dm.load()
    dm.setup("fit")
    seen = []
    for batch in dm.train_dataloader():
        assert set(batch) == {"src", "src_len", "tgt", "index"}
        b = batch["src"].size(0)
        assert batch["src"].dtype == batch["tgt"].dtype == torch.long
        assert batch["src_len"].shape == batch["index"].shape == (b,)
        assert int(batch["src_len"].max()) == batch["src"].size(1)
        for row in range(b):
            i = int(batch["index"][row])
            n = int(batch["src_len"][row])
            src, tgt = batch["src"][row].tolist(), batch["tgt"][row].tolist()
            assert src[n:] == [PAD_ID] * (len(src) - n) and PAD_ID not in src[:n]
            assert tok.source.decode(src) == PAIRS["train"][i][0]
            end = tgt.index(EOS_ID)
            assert set(tgt[end + 1 :]) <= {PAD_ID} and BOS_ID not in tgt
            assert tok.target.decode(tgt) == PAIRS["train"][i][1]
            seen.append(i)
    assert sorted(seen) == list(range(len(PAIRS["train"])))
    assert [b["src"].size(0) for b in dm.val_dataloader()] == [2]
    assert sum(b["src"].size(0) for b in dm.test_dataloader()) == 4


def test_bucketing_groups_lengths_and_is_seeded_per_epoch() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (2000,), generator=gen).numpy()
    plain = LengthBatches(lengths, 16, shuffle=True, bucket=False, seed=1)
    bucket = LengthBatches(lengths, 16, shuffle=True, bucket=True, seed=1)

    def padding(sampler: LengthBatches) -> int:
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in sampler)

    assert padding(bucket) < padding(plain) / 5
    sampler = LengthBatches(lengths, 16, shuffle=True, bucket=True, seed=1)
    sampler.set_epoch(0)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(2000)) and len(first) == len(sampler)
    assert list(sampler) == first  # the same epoch, the same order
    sampler.set_epoch(1)
    assert list(sampler) != first
    other = LengthBatches(lengths, 16, shuffle=True, bucket=True, seed=2)
    other.set_epoch(0)
    assert list(other) != first
    # Resuming mid-epoch skips the batches already done.
    resumed = LengthBatches(lengths, 16, True, True, seed=1, take_start=lambda epoch: 5)
    resumed.set_epoch(0)
    assert list(resumed) == first[5:]


def test_ranks_take_disjoint_batches_of_one_order() -> None:
    lengths = torch.randint(1, 30, (101,), generator=torch.Generator().manual_seed(0)).numpy()
    for shuffle in (True, False):
        ranks = [LengthBatches(lengths, 8, shuffle, True, seed=3, rank=r, world=2) for r in (0, 1)]
        got = [[i for b in sampler for i in b] for sampler in ranks]
        assert not set(got[0]) & set(got[1])
        sizes = [len(list(sampler)) for sampler in ranks]
        assert sizes == [len(sampler) for sampler in ranks]
        assert sizes == ([6, 6] if shuffle else [7, 6])  # 13 batches: training cut to equal counts
        if not shuffle:
            assert sorted(got[0] + got[1]) == list(range(101))  # evaluation reads every pair


def test_max_len_drops_training_pairs_and_cuts_the_others(tsv: Path) -> None:
    dm = _dm(tsv, tokenizer="char", max_len=9)
    dm.load()
    dm.check_layout()
    kept = [i for i, (en, fr) in enumerate(PAIRS["train"]) if len(en) <= 9 and len(fr) <= 9]
    assert kept == [0, 1, 2, 3]
    assert dm.data["train"].index.tolist() == kept and dm.dropped == len(PAIRS["train"]) - len(kept)
    assert all(
        len(s) <= 9 and len(t) <= 9
        for s, t in zip(dm.data["test"].src, dm.data["test"].tgt, strict=True)
    )
    assert len(dm.data["test"]) == 4  # evaluation keeps every pair
    assert [len(i) for i in dm.encode_source(["Hi.", "Where is the station?"])] == [3, 9]
    with pytest.raises(
        UserError, match=r"data.max_len=1 drops every train pair: raise data.max_len"
    ):
        _dm(tsv, tokenizer="char", max_len=1).check_layout()


# -- references ---------------------------------------------------------------------------------------
def test_references_group_every_target_of_a_source(tsv: Path) -> None:
    refs = _dm(tsv).references("test")
    assert refs == [
        ("Run!", ["Cours\u202f!", "Fuyez\u202f!", "Courez\u202f!"]),
        ("Hello.", ["Bonjour."]),
    ]
    back = _dm(tsv, direction="fr-en").references("test")
    assert back[0] == ("Cours\u202f!", ["Run!"]) and len(back) == 4


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/tatoeba-eng-fra")
def test_references_of_the_shared_tatoeba_copy() -> None:
    dm = _dm(SHARED)
    refs = dm.references("test")
    assert len(refs) == 2912  # the README's count of distinct English sentences
    assert sum(len(targets) for _, targets in refs) == 4147
    assert max(len(targets) for _, targets in refs) > 1
    assert all(tatoeba_split(en) == "test" for en, _ in refs[:200])
    french = {fr for _, targets in refs for fr in targets}
    assert len(_dm(SHARED, direction="fr-en").references("test")) == len(french)


# -- the corpus by name -------------------------------------------------------------------------------
def _fra_zip(folder: Path, rows: list[tuple[str, str]]) -> tuple[str, str]:
    text = "".join(
        f"{en}\t{fr}\tCC-BY 2.0 (France) Attribution: tatoeba.org #1 (x)\n" for en, fr in rows
    )
    path = folder / "fra-eng.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("_about.txt", "about")
        zf.writestr("fra.txt", text)
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


def _rows_for_every_split() -> list[tuple[str, str]]:
    rows, want = [], {"train": 3, "valid": 1, "test": 1}
    for n in range(2000):
        en = f"Sentence {n}."
        split = tatoeba_split(en)
        if want[split]:
            want[split] -= 1
            rows += [(en, f"Phrase {n}."), (en, f"Autre phrase {n}.")]
    return rows


def test_tatoeba_by_name_downloads_splits_and_checks(tmp_path: Path) -> None:
    rows = _rows_for_every_split()
    url, sha = _fra_zip(tmp_path, rows)
    dm = PairDataModule(
        dataset="tatoeba_eng_fra", url=url, sha256=sha, cache_dir=str(tmp_path / "c")
    )
    dm.load()
    folder = tmp_path / "c" / "datasets" / "tatoeba_eng_fra"
    assert json.loads((folder / "manifest.json").read_text())["sha256_checked"]
    got = {s: list(zip(*dm.texts()[s], strict=True)) for s in ("train", "valid", "test")}
    assert sorted(p for ps in got.values() for p in ps) == sorted(rows)
    for split, pairs in got.items():
        assert all(tatoeba_split(en) == split for en, _ in pairs)
    assert len(dm.references("test")[0][1]) == 2  # both translations stay in the split
    assert (folder / "train.tsv").read_text().count("\t") == len(got["train"])  # no attribution


def test_tatoeba_checksum_mismatch_keeps_nothing(tmp_path: Path) -> None:
    url, sha = _fra_zip(tmp_path, _rows_for_every_split())
    cache = tmp_path / "c"
    with pytest.raises(DownloadError, match=r"has SHA-256 .* not the expected 0{64}"):
        prepare_dataset("tatoeba_eng_fra", cache, url=url, sha256="0" * 64)
    assert not (cache / "datasets" / "tatoeba_eng_fra").exists()
    assert not (cache / "downloads").exists()


def test_tatoeba_with_a_bad_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fra-eng.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fra.txt", "Hi.\tSalut.\tx\nno tab\n")
    with pytest.raises(UserError, match=r"fra.txt:2 is not English<TAB>French"):
        prepare_dataset("tatoeba_eng_fra", tmp_path / "c", url=path.as_uri())
    assert not (tmp_path / "c" / "datasets" / "tatoeba_eng_fra").exists()


# -- Hugging Face datasets ----------------------------------------------------------------------------
def test_hf_format_reads_a_local_folder_of_json_files(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    folder = tmp_path / "hf"
    folder.mkdir()
    for split, name in (("train", "train"), ("valid", "validation"), ("test", "test")):
        rows = [{"translation": {"en": en, "fr": fr}} for en, fr in PAIRS[split]]
        (folder / f"{name}.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    kw = {"format": "hf", "hf_name": str(folder), "batch_size": 2}
    dm = PairDataModule(source_field="translation.en", target_field="translation.fr", **kw)
    texts = {s: list(zip(*dm.texts()[s], strict=True)) for s in ("train", "valid", "test")}
    assert texts == PAIRS
    dm.load()
    assert next(iter(dm.train_dataloader()))["src"].size(0) == 2
    with pytest.raises(UserError, match=r"has no field 'source' .*set data.source_field"):
        PairDataModule(**kw).texts()


def test_lightning_sets_the_epoch_of_the_bucketed_order(tsv: Path, tmp_path: Path) -> None:
    import lightning as L

    class Record(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: dict[int, list[list[int]]] = {}

        def training_step(self, batch: dict, i: int) -> torch.Tensor:
            self.seen.setdefault(self.current_epoch, []).append(batch["index"].tolist())
            return self.w.square().sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = _dm(tsv, batch_size=2)
    model = Record()
    trainer = L.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.train_dataloader.batch_sampler.epoch == 2  # set by Lightning, not counted
    sampler = dm.train_dataloader().batch_sampler
    for epoch in range(3):
        assert model.seen[epoch] == [b.tolist() for b in sampler.batches(epoch)]
    assert model.seen[0] != model.seen[1] or model.seen[1] != model.seen[2]
