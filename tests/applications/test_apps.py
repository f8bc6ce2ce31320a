"""Applications: embeddings, search index, likelihood ranking, task builders, and their errors.

Every model here is tiny and built in-process (RNNLM + a tokenizer), so the file runs in seconds.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rnnlm.applications import (
    SearchIndex,
    embed,
    rank_continuations,
    read_passages,
    split_passages,
)
from rnnlm.applications import search as search_module
from rnnlm.applications.lexical import BM25, reciprocal_rank_fusion
from rnnlm.applications.rank import parse_candidates
from rnnlm.applications.rank import rank as rank_command
from rnnlm.applications.search import default_index_path
from rnnlm.applications.search import search as search_command
from rnnlm.applications.tasks import (
    build_cloze_task,
    build_retrieval_task,
    topk_accuracy,
    unigram_choice,
    word_counts,
)
from rnnlm.cli import run_task
from rnnlm.config import CONF_DIR
from rnnlm.data import CharTokenizer, WordTokenizer
from rnnlm.errors import UserError
from rnnlm.inference.lm import LanguageModel
from rnnlm.models import RNNLM

TEXT = """ORSINO.
If music be the food of love, play on;
Give me excess of it, that surfeiting,
The appetite may sicken, and so die.

CURIO.
Will you go hunt, my lord?

ORSINO.
What, Curio?

CURIO.
The hart.

VIOLA.
What country, friends, is this?

CAPTAIN.
This is Illyria, lady.
"""


def char_lm(cell: str = "gru", seed: int = 0, text: str = TEXT) -> LanguageModel:
    torch.manual_seed(seed)
    tok = CharTokenizer.train(text)
    model = RNNLM(tok.vocab_size, cell=cell, embedding_dim=16, hidden_dim=24, dropout=0.3)
    return LanguageModel(model, tok)


def word_lm(text: str = TEXT + "my lord\n", seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    tok = WordTokenizer.train(text)
    return LanguageModel(RNNLM(tok.vocab_size, cell="lstm", embedding_dim=8, hidden_dim=8), tok)


def save_checkpoint(lm: LanguageModel, path: Path) -> Path:
    """A checkpoint LanguageModel.load reads (what src/train.py writes, minus the trainer state)."""
    m = lm.model
    hp_model = {
        "_target_": "rnnlm.models.RNNLM",
        "cell": m.cell,
        "embedding_dim": m.embedding.embedding_dim,
        "hidden_dim": m.hidden_dim,
        "num_layers": m.num_layers,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in m.state_dict().items()},
            "hyper_parameters": {"model": hp_model, "vocab_size": lm.tokenizer.vocab_size},
            "rnnlm": {"format": 1, "tokenizer": lm.tokenizer.to_dict(), "config": {}},
        },
        path,
    )
    return path


# -- embed ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("pooling", ["mean", "last", "max"])
def test_embed_is_deterministic_and_unit_norm(cell: str, pooling: str) -> None:
    lm = char_lm(cell)
    lm.model.train()  # dropout on: embed must switch it off, and restore the mode after
    texts = ["If music be the food of love", "The hart.", "x", "What country, friends, is this?"]
    a = embed(lm, texts, pooling=pooling)
    b = embed(lm, texts, pooling=pooling)
    assert a.shape == (4, 24) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert torch.allclose(a.norm(dim=1), torch.ones(4), atol=1e-6)
    assert lm.model.training
    # The same text alone or among others (another batch layout, other padding): the same vector.
    alone = embed(lm, texts[1], pooling=pooling)
    assert alone.shape == (1, 24)
    assert torch.allclose(alone[0], a[1], atol=1e-5)
    # Different texts give different vectors.
    assert not torch.allclose(a[0], a[1], atol=1e-3)


def test_embed_pooling_differs_and_unknown_pooling_is_refused() -> None:
    lm = char_lm()
    text = ["If music be the food of love, play on"]
    assert not torch.allclose(embed(lm, text, pooling="mean"), embed(lm, text, pooling="last"))
    with pytest.raises(UserError, match="pooling='cls'"):
        embed(lm, text, pooling="cls")
    with pytest.raises(UserError, match="no tokens"):
        embed(lm, ["ok", ""])


# -- search --------------------------------------------------------------------------------------
def test_split_passages_lines_and_paragraphs() -> None:
    paragraphs = split_passages(TEXT, "paragraph")
    assert paragraphs[0] == (1, TEXT.split("\n\n")[0])
    assert paragraphs[1] == (6, "CURIO.\nWill you go hunt, my lord?")
    assert len(paragraphs) == 6
    lines = split_passages("  a  \n\n\nbb\n", "line")
    assert lines == [(1, "a"), (4, "bb")]
    assert split_passages(TEXT, "paragraph", min_chars=20) == [
        p for p in paragraphs if len(p[1]) >= 20
    ]
    with pytest.raises(UserError, match="split='page'"):
        split_passages(TEXT, "page")


@pytest.mark.parametrize("split", ["paragraph", "line"])
def test_search_returns_the_passage_itself_first(tmp_path: Path, split: str) -> None:
    corpus = tmp_path / "play.txt"
    corpus.write_text(TEXT)
    lm = char_lm()
    index = SearchIndex.build(lm, corpus, split=split)
    assert index.path is None and index.built  # a model built in memory: no cache
    assert len(index) == len(split_passages(TEXT, split))
    for passage in index.passages:
        hits = index.search(passage.text, top_k=3)
        assert hits[0].passage.text == passage.text  # "ORSINO." occurs twice: either is itself
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.rank for h in hits] == [1, 2, 3]
        assert hits[0].score >= hits[1].score >= hits[2].score
    assert len(index.search("lord", top_k=100)) == len(index)


def test_index_is_rebuilt_when_the_corpus_changes_and_reused_when_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "act1").mkdir(parents=True)
    play = corpus / "act1" / "scene1.txt"
    play.write_text(TEXT)
    (corpus / "notes.md").write_text("not a .txt file: never read")
    lm = char_lm()
    lm.path = tmp_path / "run" / "checkpoints" / "best.ckpt"  # as if loaded from there
    calls = []
    monkeypatch.setattr(
        search_module,
        "embed",
        lambda lm, texts, **kw: calls.append(len(texts)) or embed(lm, texts, **kw),
    )

    first = SearchIndex.build(lm, corpus)
    assert first.built and calls == [6]
    assert first.path == default_index_path(lm.path, corpus, "paragraph")
    assert first.path.parent == tmp_path / "run" / "checkpoints" / "search-index"
    assert first.passages[0].source == "act1/scene1.txt" and first.passages[0].line == 1

    again = SearchIndex.build(lm, corpus)
    assert not again.built and calls == [6]  # reused: nothing embedded
    assert torch.equal(again.embeddings, first.embeddings) and again.key == first.key

    # An edit that keeps the file's size and modification time: the content hash still sees it.
    st = play.stat()
    play.write_text(TEXT.replace("Illyria", "Illyrix"))
    os.utime(play, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert play.stat().st_size == st.st_size and play.stat().st_mtime_ns == st.st_mtime_ns
    edited = SearchIndex.build(lm, corpus)
    assert edited.built and calls == [6, 6] and edited.key != first.key
    assert edited.passages[-1].text.endswith("Illyrix, lady.")

    # A new file in the folder, or new weights, or another pooling: rebuilt too.
    (corpus / "act2.txt").write_text("SEBASTIAN.\nMy stars shine darkly over me.\n")
    assert SearchIndex.build(lm, corpus).built and calls[-1] == 7
    assert not SearchIndex.build(lm, corpus).built and len(calls) == 3
    with torch.no_grad():
        lm.model.decoder.bias.add_(0.1)  # not used by embed, but part of the model's weights
    assert SearchIndex.build(lm, corpus).built and len(calls) == 4
    assert SearchIndex.build(lm, corpus, pooling="last").built and len(calls) == 5
    # A damaged index file is rebuilt, not trusted.
    path = default_index_path(lm.path, corpus, "paragraph")
    path.write_bytes(b"garbage")
    assert SearchIndex.build(lm, corpus, pooling="last").built and len(calls) == 6


def test_corpus_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_passages(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n")
    with pytest.raises(UserError, match="has no passages"):
        read_passages(empty)
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="without .txt files"):
        read_passages(tmp_path / "folder")
    index = SearchIndex.build(char_lm(), _write(tmp_path / "c.txt", TEXT))
    with pytest.raises(UserError, match="query is empty"):
        index.search("   ")
    with pytest.raises(UserError, match="top_k=0"):
        index.search("love", top_k=0)


def test_symlinked_and_undecodable_corpus_files_are_searched(tmp_path: Path) -> None:
    """A corpus file that is a symlink keeps its own name (not its target's, outside the folder), and a
    file with a byte that is not UTF-8 is read with U+FFFD in its place rather than stopping."""
    elsewhere = _write(tmp_path / "archive-v3.txt", "the king is here\n\nthe queen too\n")
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "current.txt").symlink_to(elsewhere)
    (folder / "bad.txt").write_bytes(b"caf\xe9 society\n")
    passages, _ = read_passages(folder)
    assert {p.source for p in passages} == {"current.txt", "bad.txt"}
    assert any("\ufffd" in p.text for p in passages if p.source == "bad.txt")
    single, _ = read_passages(folder / "current.txt")
    assert {p.source for p in single} == {"current.txt"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- rank ----------------------------------------------------------------------------------------
def biased_word_lm(favourite: str) -> LanguageModel:
    """A word model whose next-token distribution is the same everywhere and favours one word."""
    lm = word_lm()
    with torch.no_grad():
        lm.model.decoder.weight.zero_()
        lm.model.decoder.bias.zero_()
        lm.model.decoder.bias[lm.tokenizer.stoi[favourite]] = 8.0
    return lm


def test_rank_orders_a_hand_built_case() -> None:
    lm = biased_word_lm("lord")
    v = lm.tokenizer.vocab_size
    rows = rank_continuations(lm, "Will you go hunt, my", ["hart.", "lord", "lord lord", "music"])
    assert [r.candidate for r in rows] == ["lord", "lord lord", "hart.", "music"]
    assert [r.rank for r in rows] == [1, 2, 3, 4]
    # Exact values: p(lord) = e^8 / (e^8 + V - 1) at every step, the others 1 / (e^8 + V - 1).
    log_z = np.log(np.exp(8.0) + v - 1)
    by = {r.candidate: r for r in rows}
    assert by["lord"].logprob == pytest.approx(8.0 - log_z, abs=1e-4)
    assert by["lord lord"].logprob == pytest.approx(2 * (8.0 - log_z), abs=1e-4)
    assert by["lord lord"].num_tokens == 2
    assert by["lord lord"].mean_logprob == pytest.approx(by["lord"].logprob, abs=1e-4)
    assert by["hart."].logprob == pytest.approx(-log_z, abs=1e-4)
    # Ties keep the input order ("hart." and "music" score the same).
    assert rows[2].logprob == pytest.approx(rows[3].logprob)
    # Total and per-token orders differ: "lord hart." is less likely than "music" as a whole,
    # but more likely per token.
    by_total = rank_continuations(lm, "my", ["lord hart.", "music"])
    by_mean = rank_continuations(lm, "my", ["lord hart.", "music"], normalize=True)
    assert [r.candidate for r in by_total] == ["music", "lord hart."]
    assert [r.candidate for r in by_mean] == ["lord hart.", "music"]
    assert by_mean[0].mean_logprob == pytest.approx(by_mean[0].logprob / 2)


def test_rank_agrees_with_score_and_counts_unknowns() -> None:
    lm = char_lm("lstm")
    context, cands = "If music be the food of ", ["love", "lo", "zzz", "l"]
    rows = rank_continuations(
        lm, context, cands, max_batch_tokens=3
    )  # several batches of candidates
    for r in rows:
        s = lm.score("\n" + context + r.candidate)  # rank reads the context after a line break
        assert r.logprob == pytest.approx(sum(s.logprobs[-len(r.candidate) :]), abs=1e-4)
    assert {r.candidate: r.unknown for r in rows} == {"love": 0, "lo": 0, "zzz": 3, "l": 0}
    word_rows = rank_continuations(word_lm(), "the food of", ["music", "nonsense words"])
    assert {r.candidate: r.unknown for r in word_rows} == {"music": 0, "nonsense words": 2}
    with pytest.raises(UserError, match="non-empty list"):
        rank_continuations(lm, "x", [])
    with pytest.raises(UserError, match="candidate 1"):
        rank_continuations(lm, "x", ["a", ""])


def test_parse_candidates_accepts_lists_and_json_and_refuses_the_rest() -> None:
    assert parse_candidates('["to be", "not"]') == ["to be", "not"]
    assert parse_candidates(OmegaConf.create({"c": ["a", 1]}).c) == ["a", "1"]
    for bad in ("to be, not", '"just a string"', "[1", "[]", '{"a": 1}', "[[1]]", "[true]"):
        with pytest.raises(UserError, match="candidates"):
            parse_candidates(bad)


# -- the commands (Hydra configs composed from conf/, run in-process) ------------------------------
def _cfg(name: str, overrides: list[str]):  # noqa: ANN202
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def test_search_and_rank_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = save_checkpoint(biased_word_lm("lord"), tmp_path / "run" / "checkpoints" / "best.ckpt")
    corpus = _write(tmp_path / "play.txt", TEXT)
    cfg = _cfg(
        "search",
        [
            f"ckpt_path={ckpt}",
            f"corpus={corpus}",
            "query='What, Curio?'",
            "split=line",
            "top_k=2",
            "device=cpu",
        ],
    )
    hits = run_task(search_command, cfg)
    out = capsys.readouterr()
    assert hits[0].passage.text == "What, Curio?" and len(hits) == 2
    assert "1. score" in out.out and "play.txt:" in out.out and "built" in out.err
    run_task(search_command, cfg)
    assert "reused" in capsys.readouterr().err
    assert (ckpt.parent / "search-index").is_dir()

    cfg = _cfg(
        "rank",
        [f"ckpt_path={ckpt}", "context=my", "candidates=[hart., lord]", "device=cpu"],
    )
    rows = run_task(rank_command, cfg)
    out = capsys.readouterr().out
    assert [r.candidate for r in rows] == ["lord", "hart."]
    assert "log p (nats)" in out and "per token" in out
    assert out.index("'lord'") < out.index("'hart.'")


def test_bm25_search_needs_no_model_and_hybrid_fuses_both(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    corpus = _write(tmp_path / "play.txt", TEXT)
    cfg = _cfg("search", [f"corpus={corpus}", "query='hunt, my lord'", "method=bm25", "top_k=3"])
    hits = run_task(search_command, cfg)  # no ckpt_path: BM25 reads only the corpus
    assert hits[0].passage.text == "CURIO.\nWill you go hunt, my lord?"
    assert hits[0].score > 0 and hits[1].score < hits[0].score
    assert "1. score" in capsys.readouterr().out
    # hybrid: embeddings and BM25 fused; a passage first in both stays first
    lm = char_lm()
    hybrid = SearchIndex.build(lm, corpus, method="hybrid")
    embedded = SearchIndex.build(lm, corpus, method="embed")
    lexical = SearchIndex.build(None, corpus, method="bm25")
    for passage in hybrid.passages:
        fused = reciprocal_rank_fusion(embedded.scores(passage.text), lexical.scores(passage.text))
        assert np.allclose(hybrid.scores(passage.text), fused)
    query = "Will you go hunt, my lord?"
    assert hybrid.search(query, top_k=1)[0].passage.text == "CURIO.\nWill you go hunt, my lord?"
    with pytest.raises(UserError, match="method='both'"):
        SearchIndex.build(lm, corpus, method="both")


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("search", ["corpus=MISSING", "query=love"], "nope.txt does not exist"),
        ("search", ["corpus=CORPUS", "query=love", "ckpt_path=null"], "pass ckpt_path=<file>, or"),
        ("search", ["corpus=EMPTY", "query=love"], "has no passages"),
        ("search", ["corpus=CORPUS", "query=love", "split=page"], "split='page'"),
        ("search", ["corpus=CORPUS", "query=love", "top_k=null"], "top_k=None must be an integer"),
        ("search", ["corpus=CORPUS", "query=love", "max_chars=0"], "max_chars=0 must be"),
        ("search", ["corpus=CORPUS", "query=love", "device=gpu"], "device=gpu is not a device"),
        ("rank", ["candidates=not a list"], "is not a list of strings"),
        ("rank", ["candidates=[]"], "empty list"),
        ("rank", ["candidates=[a]", "sort_by=best"], "sort_by='best'"),
    ],
)
def test_command_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, name: str, overrides: list[str], message: str
) -> None:
    ckpt = save_checkpoint(char_lm(), tmp_path / "best.ckpt")
    paths = {
        "MISSING": str(tmp_path / "nope.txt"),
        "EMPTY": str(_write(tmp_path / "empty.txt", "\n\n")),
        "CORPUS": str(_write(tmp_path / "c.txt", TEXT)),
    }
    overrides = [
        o.split("=")[0] + "=" + paths.get(o.split("=", 1)[1], o.split("=", 1)[1]) for o in overrides
    ]
    cfg = _cfg(name, [f"ckpt_path={ckpt}", "device=cpu", *overrides])
    with pytest.raises(SystemExit) as exit_info:
        run_task(search_command if name == "search" else rank_command, cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


# -- task builders and baselines -------------------------------------------------------------------
PASSAGES = [f"passage {i} " + "word " * (i % 7) for i in range(300)]


def test_retrieval_task_is_deterministic_for_a_seed() -> None:
    a = build_retrieval_task(PASSAGES, num_queries=50, num_candidates=100, seed=3)
    b = build_retrieval_task(PASSAGES, num_queries=50, num_candidates=100, seed=3)
    c = build_retrieval_task(PASSAGES, num_queries=50, num_candidates=100, seed=4)
    assert a == b and a != c
    assert len(a) == 50 and len({it.query for it in a}) == 50
    for it in a:
        assert len(it.candidates) == 100 and len(set(it.candidates)) == 100
        assert it.candidates[it.answer] == it.query + 1
        assert it.query not in it.candidates
    assert len({it.answer for it in a}) > 10  # the answer's position is spread out


def test_retrieval_task_never_offers_a_copy_of_the_answer() -> None:
    passages = ["[Exit.]", "a", "[Exit.]", "b", *[f"p{i}" for i in range(20)]]
    for it in build_retrieval_task(passages, num_queries=20, num_candidates=10, seed=0):
        texts = [passages[j] for j in it.candidates]
        assert texts.count(passages[it.query + 1]) == 1
        assert passages[it.query] not in texts or passages[it.query] == passages[it.query + 1]
    with pytest.raises(UserError, match="too few"):
        build_retrieval_task(passages[:5], num_candidates=10)


WORDS = [a + b for a in "bcdfghjklm" for b in "aeiouyrstwnpqxz"]  # 150 made-up words
CLOZE_TRAIN = " ".join(f"{w} " * (1 + (i * 7) % 40) for i, w in enumerate(WORDS))
CLOZE_HELDOUT = "\n".join(
    f"line {k} of the play ends with {WORDS[(k * 13) % 150]}{',' if k % 2 else ''}"
    for k in range(400)
)


def test_cloze_task_is_deterministic_and_frequency_matched() -> None:
    counts = word_counts(CLOZE_TRAIN)
    a = build_cloze_task(CLOZE_HELDOUT, counts, num_items=100, seed=1, window=20)
    b = build_cloze_task(CLOZE_HELDOUT, counts, num_items=100, seed=1, window=20)
    c = build_cloze_task(CLOZE_HELDOUT, counts, num_items=100, seed=2, window=20)
    assert a == b and a != c and len(a) == 100
    lines = CLOZE_HELDOUT.split("\n")
    by_count = sorted(counts.values(), reverse=True)
    for it in a:
        answer = it.candidates[it.answer]
        line = lines[it.line - 1]
        assert line.rstrip(",").endswith(answer)  # the punctuation is not part of the answer
        assert it.context.endswith(line[: len(line.rstrip(",")) - len(answer)])
        assert len(it.candidates) == 5 and len(set(it.candidates)) == 5
        ranks = [by_count.index(counts[w]) for w in it.candidates]
        # every candidate within one band of 20 ranks (equal counts share a rank here)
        assert max(ranks) - min(ranks) < 20 + by_count.count(counts[answer])
    accuracy = np.mean([unigram_choice(it, counts) == it.answer for it in a])
    assert accuracy < 0.5  # frequency alone does not find the answer


def test_cloze_band_filled_by_the_answers_spellings_still_gives_distinct_distractors() -> None:
    # Equal counts: "the", "The" and "THE" can sit side by side in a small band. Before, a band of
    # window=5 around "the" could hold only 2 other words, and drawing 4 of them raised a ValueError.
    counts = Counter(
        {"the": 9, "The": 9, "THE": 9, "cat": 5, "mat": 5, "sat": 4, "dog": 3, "ran": 2}
    )
    heldout = "\n".join(["and so we all went to see the"] * 30)
    for seed in range(20):
        (item,) = build_cloze_task(heldout, counts, num_items=1, seed=seed, window=5)
        others = [w for i, w in enumerate(item.candidates) if i != item.answer]
        assert item.candidates[item.answer] == "the"
        assert len(set(others)) == 4 and not {w.lower() for w in others} & {"the"}
    with pytest.raises(UserError, match="num_distractors < window"):
        build_cloze_task(heldout, counts, window=4, num_distractors=4)
    with pytest.raises(UserError, match="only 3 other words"):
        build_cloze_task(heldout, Counter({"the": 3, "The": 3, "a": 2, "b": 2, "c": 2}), window=5)


def test_bm25_and_topk_accuracy() -> None:
    docs = ["the king speaks of war", "a song of love", "war war war", "nothing here"]
    scores = BM25(docs).scores("war and the king")
    assert scores[0] > scores[2] > scores[1] == scores[3] == 0.0
    # the textbook formula (Lucene's idf), by hand for the third document: tf 3, |d| 3, avgdl 3.5
    idf = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))
    assert scores[2] == pytest.approx(idf * 3 * 2.5 / (3 + 1.5 * (1 - 0.75 + 0.75 * 3 / 3.5)))
    fused = reciprocal_rank_fusion(np.array([3.0, 1.0, 2.0]), np.array([0.0, 2.0, 1.0]), k=60)
    assert fused == pytest.approx([1 / 61 + 1 / 63, 1 / 63 + 1 / 61, 2 / 62])
    s = np.array([[3.0, 1.0, 2.0], [1.0, 1.0, 1.0], [0.0, 5.0, 5.0]])
    assert topk_accuracy(s, [0, 0, 1], 1) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert topk_accuracy(s, [2, 1, 0], 2) == pytest.approx((1 + 2 / 3 + 0) / 3)
    # an answer a diverged model scores NaN is a miss, not a hit
    assert topk_accuracy(np.array([[np.nan, 1.0, 2.0]]), [0], 1) == 0.0
    assert Counter(word_counts("a a b c, d's o'er x1")) == Counter(
        {"a": 2, "b": 1, "d's": 1, "o'er": 1}
    )


# -- docs/how-it-works.md: the cell equations are the ones torch computes ----------------------------
def test_cell_equations_of_how_it_works_match_torch() -> None:
    torch.manual_seed(0)
    e_dim, h_dim, steps = 5, 4, 6
    x = torch.randn(1, steps, e_dim)
    sig = torch.sigmoid
    for cell in ("rnn", "lstm", "gru"):
        m = RNNLM(10, cell=cell, embedding_dim=e_dim, hidden_dim=h_dim, num_layers=1).rnn
        w_ih, w_hh, b_ih, b_hh = m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0
        h, c = torch.zeros(h_dim), torch.zeros(h_dim)
        outs = []
        for t in range(steps):
            e = x[0, t]
            a_i, a_h = w_ih @ e + b_ih, w_hh @ h + b_hh
            if cell == "rnn":
                h = torch.tanh(a_i + a_h)
            elif cell == "lstm":  # stacked i, f, g, o
                i, f, g, o = (a_i + a_h).chunk(4)
                c = sig(f) * c + sig(i) * torch.tanh(g)
                h = sig(o) * torch.tanh(c)
            else:  # stacked r, z, n; the reset gate multiplies W_hn h + b_hn
                (ir, iz, in_), (hr, hz, hn) = a_i.chunk(3), a_h.chunk(3)
                r, z = sig(ir + hr), sig(iz + hz)
                n = torch.tanh(in_ + r * hn)
                h = (1 - z) * n + z * h
            outs.append(h)
        expected, _ = m(x if m.batch_first else x.transpose(0, 1))  # the model may run time-major
        expected = expected[0] if m.batch_first else expected[:, 0]
        assert torch.allclose(torch.stack(outs), expected, atol=1e-6), cell


def test_unwritable_index_folder_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the index folder should be")
    corpus = _write(tmp_path / "c.txt", TEXT)
    with pytest.raises(UserError, match="cannot write the search index"):
        SearchIndex.build(char_lm(), corpus, index_path=blocker / "index.pt")
