"""Model quality features: AWD-LSTM regularisers, NT-ASGD, variable-length BPTT, standard corpora
downloads, byte/BPE tokenizers, the Transformer baseline, the experiment configs, the quality benchmark.

Model-level checks are plain torch (fast); training runs are tiny and in-process, except the DDP ones
(subprocesses, as the DDP launcher needs) and the benchmark's quick mode.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CONF_DIR, REPO_ROOT, TINY_SIZES, tiny_overrides, train_in_process
from rnnlm.data.download import DownloadError, prepare_dataset
from rnnlm.data.layout import variable_spans
from rnnlm.data.tokenizers import BPETokenizer, ByteTokenizer, tokenizer_from_dict, train_tokenizer
from rnnlm.models import RNNLM, TransformerLM, detach_hidden
from rnnlm.models.regularization import embedding_dropout, locked_dropout
from rnnlm.training.nt_asgd import NTASGD

V = 23
CELLS = ["lstm", "gru"]
# Each regulariser, switched on.
REGULARISERS = {
    "dropout_input": 0.4,
    "dropout_hidden": 0.4,
    "dropout_embedding": 0.3,
    "weight_drop": 0.5,
}


def _model(cell: str, **kw) -> RNNLM:
    torch.manual_seed(0)
    base = {"embedding_dim": 12, "hidden_dim": 12, "num_layers": 3, "dropout": 0.0}
    return RNNLM(V, cell=cell, **{**base, **kw})


def _x(b: int = 3, t: int = 9) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(1))


# ==================================================================================================
# Regularisers: off = the plain model, exactly; on = training-mode output only; evaluation deterministic
# ==================================================================================================
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("key", [*REGULARISERS, "ar_alpha", "tar_beta"])
def test_regulariser_off_gives_exactly_the_plain_model(cell: str, key: str) -> None:
    """The switch at its "off" value, on the layer-by-layer path where it has one, equals nn.LSTM/GRU."""
    off = {"dropout_input": 0.0, "dropout_hidden": 0.0}.get(key, 0.0)
    plain, regular = _model(cell), _model(cell, **{key: off})
    if key in ("dropout_input", "dropout_hidden"):
        assert regular.layerwise  # the locked path really runs, with zero rates
    regular.load_state_dict(plain.state_dict())
    x = _x()
    for mode in ("train", "eval"):
        getattr(plain, mode)(), getattr(regular, mode)()
        torch.manual_seed(5)
        a, ha = plain(x)
        torch.manual_seed(5)
        b, hb = regular(x)
        assert torch.equal(a, b), (mode, (a - b).abs().max())
        for u, v in zip(detach_hidden(ha), detach_hidden(hb), strict=True):
            assert torch.equal(u, v)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("key", list(REGULARISERS))
def test_regulariser_on_changes_training_output_only(cell: str, key: str) -> None:
    plain, regular = _model(cell), _model(cell, **{key: REGULARISERS[key]})
    assert set(regular.state_dict()) == set(plain.state_dict())  # same parameters, same names
    regular.load_state_dict(plain.state_dict())
    x = _x()
    plain.train(), regular.train()
    torch.manual_seed(5)
    a, _ = plain(x)
    torch.manual_seed(5)
    b, _ = regular(x)
    assert not torch.allclose(a, b), f"{key} does nothing in training mode"
    plain.eval(), regular.eval()
    e1, _ = regular(x)
    e2, _ = regular(x)
    assert torch.equal(e1, e2)  # evaluation is deterministic
    assert torch.equal(e1, plain(x)[0])  # and identical to the plain model with the same weights


@pytest.mark.parametrize("key", ["ar_alpha", "tar_beta"])
def test_ar_tar_add_a_training_penalty_and_leave_the_output_alone(key: str) -> None:
    plain, regular = _model("lstm"), _model("lstm", **{key: 2.0})
    x = _x()
    plain.train(), regular.train()
    torch.manual_seed(5)
    a, _ = plain(x)
    torch.manual_seed(5)
    b, _ = regular(x)
    assert torch.equal(a, b)
    penalty = regular.pop_penalty()
    assert penalty is not None and penalty.requires_grad and penalty.item() > 0
    assert regular.pop_penalty() is None  # consumed
    assert plain.pop_penalty() is None
    regular.eval()
    regular(x)
    assert regular.pop_penalty() is None  # nothing in evaluation


def test_locked_dropout_uses_one_mask_per_sequence() -> None:
    torch.manual_seed(0)
    out = locked_dropout(torch.ones(4, 7, 10), 0.5, training=True)
    assert torch.equal(out, out[:, :1].expand_as(out))  # same units dropped at every step
    assert (out == 0).any() and torch.allclose(out[out != 0], torch.tensor(2.0))
    assert torch.equal(
        locked_dropout(torch.ones(4, 7, 10), 0.5, training=False), torch.ones(4, 7, 10)
    )


def test_embedding_dropout_drops_whole_words() -> None:
    torch.manual_seed(0)
    x = torch.tensor([[1, 2, 1, 3, 2, 1], [3, 3, 1, 2, 4, 4]])
    emb = torch.ones(2, 6, 5)
    for _ in range(5):
        out = embedding_dropout(emb, x, 6, 0.5, training=True)
        for word in x.unique():
            rows = out[x == word]
            assert torch.equal(rows, rows[:1].expand_as(rows))  # every occurrence alike
        assert set(out.unique().tolist()) <= {0.0, 2.0}


@pytest.mark.parametrize("cell", CELLS)
def test_weight_drop_trains_lstm_and_gru_on_cpu(cell: str) -> None:
    model = _model(cell, weight_drop=0.5, dropout_hidden=0.2, dropout_input=0.2, dropout=0.2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = _x(4, 12), _x(4, 12).roll(1, 1)
    model.train()
    losses, hidden = [], None
    for _ in range(30):
        logits, hidden = model(x, hidden)
        hidden = detach_hidden(hidden)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        assert model.rnn.weight_hh_l0.grad.abs().sum() > 0  # the gradient reaches the raw matrix
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("cell", CELLS)
def test_layers_of_different_sizes_carry_state_like_one_window(cell: str) -> None:
    model = RNNLM(
        V,
        cell=cell,
        embedding_dim=8,
        hidden_dim=12,
        last_hidden_dim=8,
        num_layers=3,
        tie_weights=True,
        weight_drop=0.5,
        dropout_hidden=0.3,
    ).eval()
    x = _x(2, 10)
    with torch.no_grad():
        full, _ = model(x)
        first, h = model(x[:, :4])
        second, _ = model(x[:, 4:], detach_hidden(h))
        assert [t.shape for t in model.init_hidden(2)] == [t.shape for t in h]
    torch.testing.assert_close(torch.cat([first, second], 1), full)
    assert model.decoder.weight is model.embedding.weight


# ==================================================================================================
# NT-ASGD
# ==================================================================================================
def test_nt_asgd_switches_as_awd_lstm_does() -> None:
    """Switch when the new loss is worse than the best one from before the last `nonmono` checks."""
    opt = NTASGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0, nonmono=2)
    seen = [opt.observe(v) for v in (5.0, 4.0, 3.0, 3.5, 3.2, 4.5)]
    # 3.5 and 3.2 are worse than the best so far (3.0) but not than the best from before the last two
    # checks (5.0, then 4.0); 4.5 is worse than that best (3.0 by then): averaging starts.
    assert seen == [False, False, False, False, False, True]
    assert opt.averaging and opt.observe(10.0) is False  # switches once


def test_nt_asgd_averages_the_iterates_since_the_switch() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = NTASGD([p], lr=0.1, nonmono=1)
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([-3.0, 0.5]), torch.tensor([0.5, 0.5])]
    p.grad = grads[0]
    opt.step()  # plain SGD: not averaged
    opt.param_groups[0]["nt_asgd"]["averaging"] = True
    iterates = []
    for g in grads[1:]:
        p.grad = g
        opt.step()
        iterates.append(p.detach().clone())
    torch.testing.assert_close(opt.averaged(p), torch.stack(iterates).mean(0))
    saved = opt.swap_in([p])
    torch.testing.assert_close(p.detach(), torch.stack(iterates).mean(0))
    opt.restore(saved)
    torch.testing.assert_close(p.detach(), iterates[-1])
    # Everything (switch, history, average) survives a state_dict round trip.
    again = NTASGD([p], lr=0.1, nonmono=1)
    again.load_state_dict(opt.state_dict())
    assert again.averaging and again.n_averaged == 2
    torch.testing.assert_close(again.averaged(p), opt.averaged(p))


def test_nt_asgd_averages_parameters_without_a_gradient_over_every_step() -> None:
    """A parameter no target reaches in a step (an adaptive-softmax tail cluster) keeps its value that
    step, and that value still counts as one of the iterates averaged."""
    p, q = torch.nn.Parameter(torch.tensor([1.0])), torch.nn.Parameter(torch.tensor([2.0]))
    opt = NTASGD([p, q], lr=0.5, nonmono=None, average_from_start=True)
    q_iterates = []
    for step, g in enumerate([1.0, 1.0, 1.0, 1.0]):
        p.grad = torch.tensor([g])
        q.grad = torch.tensor([g]) if step % 2 else None  # q gets a gradient every other step
        opt.step()
        q_iterates.append(q.detach().clone())
    torch.testing.assert_close(opt.averaged(q), torch.stack(q_iterates).mean(0))


def test_nt_asgd_average_after_is_a_deadline_for_the_switch() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = NTASGD([p], lr=0.1, nonmono=5, average_after=0.5)
    opt.plan(8)  # a run of 8 steps: averaging from the 4th step on, whatever validation says
    iterates = []
    for k in range(8):
        p.grad = torch.tensor([float(k), -1.0])
        opt.step()
        assert opt.averaging == (k >= 3)
        iterates.append(p.detach().clone())
    assert opt.n_averaged == 5
    torch.testing.assert_close(opt.averaged(p), torch.stack(iterates[3:]).mean(0))
    assert opt.observe(1.0) is False  # already averaging: validation switches nothing
    # Validation can still switch it on sooner.
    early = NTASGD([torch.nn.Parameter(torch.zeros(1))], nonmono=1, average_after=1.0)
    early.plan(100)
    assert [early.observe(v) for v in (3.0, 2.0, 4.0)] == [False, False, True]
    # nonmono=None: validation never switches; the deadline alone does.
    never = NTASGD([torch.nn.Parameter(torch.zeros(1))], nonmono=None)
    assert [never.observe(v) for v in (3.0, 2.0, 4.0, 5.0)] == [False] * 4
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="average_after"):
            NTASGD([p], average_after=bad)


def _nt_asgd_run(corpus: Path, out: Path, extra: list[str]) -> dict:
    train_in_process(
        [
            *tiny_overrides(corpus),
            "data.tokenizer=word",
            "model=lstm",
            "optim=nt_asgd",
            "optim.lr=1.0",
            "scheduler=none",
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=null",
            "trainer.limit_val_batches=null",
            "trainer.val_check_interval=0.5",
            "test=false",
            "callbacks.model_checkpoint.save_top_k=-1",
            *extra,
        ],
        out,
    )
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _averages(ckpt: dict) -> list[torch.Tensor]:
    return [s["ax"] for s in ckpt["optimizer_states"][0]["state"].values() if "ax" in s]


def test_nt_asgd_evaluates_and_saves_the_averaged_weights(corpus_dir: Path, tmp_path: Path) -> None:
    from rnnlm.inference.lm import LanguageModel

    ckpt = _nt_asgd_run(corpus_dir, tmp_path / "run", ["optim.average_from_start=true"])
    nt = ckpt["optimizer_states"][0]["param_groups"][0]["nt_asgd"]
    assert nt["averaging"] and nt["n_avg"] > 0
    live = ckpt["rnnlm"]["live_state_dict"]
    state = ckpt["state_dict"]
    # The checkpoint's weights are the optimizer's averages; the live ones ride along, different.
    averaged = _averages(ckpt)
    assert any(torch.equal(state["model.rnn.weight_hh_l0"], a) for a in averaged)
    assert not torch.equal(state["model.rnn.weight_hh_l0"], live["model.rnn.weight_hh_l0"])
    # Validation ran on the averaged weights: scoring the checkpoint's weights gives the logged loss.
    best = ckpt["rnnlm"]["best_val_loss"]
    lm = LanguageModel.load(tmp_path / "run" / "checkpoints" / "best.ckpt")
    ids = torch.tensor(lm.tokenizer.encode((corpus_dir / "valid.txt").read_text()))
    nll, n = lm.evaluate_stream(ids, 4, 8)
    assert math.isclose(nll / n, best, rel_tol=1e-4), (nll / n, best)


def test_nt_asgd_average_after_in_training(corpus_dir: Path, tmp_path: Path) -> None:
    ckpt = _nt_asgd_run(
        corpus_dir, tmp_path / "run", ["optim.average_after=0.5", "optim.nonmono=null"]
    )
    nt = ckpt["optimizer_states"][0]["param_groups"][0]["nt_asgd"]
    steps = nt["steps"]
    # Half of the Trainer's estimate of the run's steps (3 epochs' worth of batches).
    assert steps == ckpt["global_step"] and abs(nt["average_at_step"] - steps / 2) <= 1
    assert nt["averaging"] and nt["n_avg"] == steps - nt["average_at_step"] + 1
    assert any(
        torch.equal(ckpt["state_dict"]["model.rnn.weight_hh_l0"], a) for a in _averages(ckpt)
    )


def test_nt_asgd_switches_in_training_when_validation_stalls(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scripted validation losses: no improvement over the check before last -> averaging starts."""
    from rnnlm.training import module as module_mod
    from rnnlm.training.metrics import perplexity

    scripted = [5.0, 4.0, 4.5, 4.6, 3.0, 2.0]  # nonmono=1: switches at the 4th check (4.6 > 4.0)

    def fake_log_split(self, stage: str) -> float:
        self.mean_loss[f"{stage}_"].compute()
        self.mean_loss[f"{stage}_"].reset()
        loss = scripted.pop(0) if stage == "val" and scripted else 9.0
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/ppl", perplexity(loss))
        return loss

    monkeypatch.setattr(module_mod.LMModule, "_log_split", fake_log_split)
    ckpt = _nt_asgd_run(corpus_dir, tmp_path / "run", ["optim.nonmono=1"])
    nt = ckpt["optimizer_states"][0]["param_groups"][0]["nt_asgd"]
    assert nt["history"][:4] == [5.0, 4.0, 4.5, 4.6]
    assert nt["averaging"] and nt["switched_at"] == 4
    assert "live_state_dict" in ckpt["rnnlm"]
    assert any(
        torch.equal(ckpt["state_dict"]["model.rnn.weight_hh_l0"], a) for a in _averages(ckpt)
    )


# ==================================================================================================
# Variable-length BPTT
# ==================================================================================================
def test_variable_spans_follow_awd_lstm() -> None:
    spans = variable_spans(100_000, 70, np.random.default_rng(0))
    starts = [s for s, _ in spans]
    lengths = [n for _, n in spans]
    assert starts == list(np.cumsum([0, *lengths[:-1]]))  # contiguous
    assert sum(lengths) == 100_000
    assert min(lengths[:-1]) >= 5
    assert 0.95 * 70 * 0.97 < np.mean(lengths) < 70  # 0.95 * 70 + 0.05 * 35 = 68.25 expected
    assert sum(n < 50 for n in lengths) / len(lengths) == pytest.approx(
        0.05, abs=0.01
    )  # the bptt/2 draws
    assert spans == variable_spans(100_000, 70, np.random.default_rng(0))


def test_variable_bptt_windows_per_epoch_and_fixed_validation(corpus_dir: Path) -> None:
    from rnnlm.data import LMDataModule

    dm = LMDataModule(
        path=str(corpus_dir), tokenizer="word", batch_size=4, bptt=8, variable_bptt=True
    )
    dm.setup()
    e0, e0_again, e1 = dm.train_windows(0), dm.train_windows(0), dm.train_windows(1)
    assert e0.spans == e0_again.spans and e0.spans != e1.spans
    data = dm.windows["train"].data
    x_prev = None
    for i in range(len(e0)):
        x, y = e0[i]
        assert torch.equal(y[:, :-1], x[:, 1:])
        if x_prev is not None:
            assert e0.spans[i][0] == e0.spans[i - 1][0] + e0.spans[i - 1][1]
        x_prev = x
    assert sum(n for _, n in e0.spans) == data.size(1) - 1
    assert {dm.windows["valid"][i][0].size(1) for i in range(len(dm.windows["valid"]) - 1)} == {8}


def test_resumed_epoch_starts_at_the_window_reached_in_the_loader_iterated(
    corpus_dir: Path,
) -> None:
    """Resuming mid-epoch E: Lightning builds and starts iterating the training loader once before the
    loop state is restored (epoch 0's windows) and, with variable-length windows, again for epoch E.
    Only the pass over epoch E's windows skips the windows done; later passes start at 0."""
    from types import SimpleNamespace

    from rnnlm.data import LMDataModule

    dm = LMDataModule(
        path=str(corpus_dir), tokenizer="word", batch_size=4, bptt=8, variable_bptt=True
    )
    dm.setup()
    dm.trainer = SimpleNamespace(current_epoch=1, global_rank=0, world_size=1)
    fresh = [x for x, _ in dm.train_dataloader()]  # epoch 1 from its start
    dm.resume_train_at(3, epoch=1)
    dm.trainer.current_epoch = 0  # not restored yet
    assert len(list(dm.train_dataloader())) == len(dm.train_windows(0))  # epoch 0's, whole
    dm.trainer.current_epoch = 1  # the loop state restored: epoch 1, 3 windows done
    resumed = [x for x, _ in dm.train_dataloader()]
    assert len(resumed) == len(fresh) - 3
    assert all(torch.equal(a, b) for a, b in zip(resumed, fresh[3:], strict=True))
    assert len(list(dm.train_dataloader())) == len(fresh)  # the next epoch starts at 0


def test_variable_bptt_scales_the_step_learning_rate(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnlm.training import module as module_mod

    seen: list[tuple[int, float]] = []
    lengths: list[int] = []
    real_start = module_mod.LMModule.on_train_batch_start
    real_step = torch.optim.SGD.step

    def on_start(self, batch, batch_idx):  # noqa: ANN001
        lengths.append(batch[0].size(1))
        return real_start(self, batch, batch_idx)

    def step(self, closure=None):  # noqa: ANN001
        seen.append((lengths[-1], self.param_groups[0]["lr"]))
        return real_step(self, closure)

    monkeypatch.setattr(module_mod.LMModule, "on_train_batch_start", on_start)
    monkeypatch.setattr(torch.optim.SGD, "step", step)
    train_in_process(
        [
            *tiny_overrides(corpus_dir),
            "data.tokenizer=word",
            "optim=sgd",
            "optim.lr=0.5",
            "scheduler=none",
            "data.variable_bptt=true",
            "data.bptt=12",
            "trainer.limit_train_batches=null",
            "test=false",
        ],
        tmp_path / "run",
    )
    assert len({n for n, _ in seen}) > 1  # the lengths vary
    for n, lr in seen:
        assert lr == pytest.approx(0.5 * n / 12)


# ==================================================================================================
# Standard corpora: download once, checked, atomic, safe archives
# ==================================================================================================
SPLIT_TEXT = {
    s: f"= {s} =\n the {s} text of a tiny wiki .\n" * 30 for s in ("train", "valid", "test")
}


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def _wikitext_zip(folder: Path) -> tuple[str, str]:
    path = _zip(
        folder / "wikitext-2-v1.zip",
        {f"wikitext-2/wiki.{s}.tokens": t for s, t in SPLIT_TEXT.items()},
    )
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_unpacks_and_reads_offline_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sha = _wikitext_zip(tmp_path)
    cache = tmp_path / "cache"
    folder = prepare_dataset("wikitext2", cache, url=url, sha256=sha)
    for split, text in SPLIT_TEXT.items():
        assert (folder / f"{split}.txt").read_text() == text
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == sha and manifest["sha256_checked"]

    def no_network(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("downloaded again")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    assert prepare_dataset("wikitext2", cache, url=url, sha256=sha) == folder
    assert prepare_dataset("wikitext2", cache) == folder
    # A changed source is not silently ignored in favour of the cached copy.
    with pytest.raises(DownloadError, match=r"data.url=file:///elsewhere.zip but .* delete"):
        prepare_dataset("wikitext2", cache, url="file:///elsewhere.zip")
    with pytest.raises(DownloadError, match=r"data.sha256=f+ but .* delete"):
        prepare_dataset("wikitext2", cache, url=url, sha256="f" * 64)


def test_checksum_mismatch_is_rejected_and_leaves_nothing(tmp_path: Path) -> None:
    url, _ = _wikitext_zip(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="SHA-256") as info:
        prepare_dataset("wikitext2", cache, url=url, sha256="0" * 64)
    assert "nothing was kept" in str(info.value)
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


@pytest.mark.parametrize("bad", ["../evil.txt", "wikitext-2/../../evil.txt", "/tmp/evil.txt"])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_member_outside_the_folder_is_refused(tmp_path: Path, bad: str, kind: str) -> None:
    members = {f"wikitext-2/wiki.{s}.tokens": t for s, t in SPLIT_TEXT.items()}
    members[bad] = "gotcha"
    if kind == "zip":
        path = _zip(tmp_path / "wikitext-2-v1.zip", members)
    else:
        path = tmp_path / "wikitext-2-v1.tgz"
        with tarfile.open(path, "w:gz") as tf:
            for name, text in members.items():
                info = tarfile.TarInfo(name)
                data = text.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    cache = tmp_path / "cache"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DownloadError, match="refused"):
        prepare_dataset("wikitext2", cache, url=path.as_uri(), sha256=sha)
    assert not (cache / "datasets" / "wikitext2").exists()
    assert not list(cache.rglob("evil.txt")) and not (tmp_path / "evil.txt").exists()


def test_no_network_error_names_url_files_and_where_to_put_them(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/wikitext-2-v1.zip"
    with pytest.raises(DownloadError) as info:
        prepare_dataset("wikitext2", tmp_path / "cache", url=url)
    msg = str(info.value)
    assert url in msg and "wiki.train.tokens" in msg
    assert str(tmp_path / "cache" / "downloads" / "wikitext-2-v1.zip") in msg
    assert str(tmp_path / "cache" / "datasets" / "wikitext2") in msg


def test_file_put_by_hand_is_used_and_unknown_checksum_is_recorded(tmp_path: Path) -> None:
    text = "".join(f"line {i} of the plays\n" for i in range(200))
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "input.txt").write_text(text)  # as a user without network would
    folder = prepare_dataset("tinyshakespeare", cache, url="http://127.0.0.1:9/input.txt")
    n = len(text.encode())
    assert (folder / "train.txt").read_bytes() == text.encode()[: n * 90 // 100]
    assert (folder / "valid.txt").read_bytes() == text.encode()[n * 90 // 100 :]
    assert (folder / "test.txt").read_bytes() == (folder / "valid.txt").read_bytes()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert manifest["sha256_checked"] is False  # trust on first use, said so


def test_data_config_downloads_then_trains(tmp_path: Path) -> None:
    url, sha = _wikitext_zip(tmp_path)
    ppl = train_in_process(
        [
            "data=wikitext2",
            f"data.url={url}",
            f"data.sha256={sha}",
            f"paths.data_dir={tmp_path / 'cache'}",
            *TINY_SIZES,
        ],
        tmp_path / "run",
    )
    assert math.isfinite(ppl)
    assert (tmp_path / "cache" / "datasets" / "wikitext2" / "manifest.json").is_file()


def test_every_standard_corpus_config_names_a_published_location() -> None:
    from omegaconf import OmegaConf

    from rnnlm.config.check import DATASET_NAMES
    from rnnlm.data.download import DATASETS

    assert set(DATASET_NAMES) == set(DATASETS)
    for name in DATASETS:
        cfg = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
        assert cfg.dataset == name and cfg.url == DATASETS[name].url
        assert cfg.sha256 == DATASETS[name].sha256  # the config and the registry agree


# ==================================================================================================
# Tokenizers: BPE and bytes
# ==================================================================================================
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n  Ünïcödé — ok?\nAll:\nSpeak, speak.\n"


def test_bpe_round_trip_and_serialisation() -> None:
    tok = train_tokenizer("bpe", TEXT * 20, vocab_size=300)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size <= 300
    ids, unknown = tok.encode_with_unknowns(TEXT)
    assert unknown == 0 and tok.decode(ids) == TEXT
    assert len(ids) < len(TEXT.encode())  # merges happened
    state = json.loads(json.dumps(tok.to_dict()))  # plain JSON
    again = tokenizer_from_dict(state)
    assert again.encode(TEXT) == ids and again.decode(ids) == TEXT
    assert tok.decode(tok.encode("never seen: 你好\n")) == "never seen: 你好\n"


def test_byte_tokenizer_keeps_every_byte() -> None:
    tok = ByteTokenizer()
    raw = b"caf\xc3\xa9 \xff\xfe broken \xe2\x82"
    text = raw.decode("utf-8", errors="surrogateescape")
    assert bytes(tok.encode(text)) == raw and tok.vocab_size == 256
    assert tokenizer_from_dict(tok.to_dict()).encode(text) == tok.encode(text)


def test_bpe_trains_evaluates_and_generates(corpus_dir: Path, tmp_path: Path) -> None:
    from rnnlm.inference.lm import LanguageModel

    out = tmp_path / "run"
    ppl = train_in_process(
        [*tiny_overrides(corpus_dir), "data.tokenizer=bpe", "data.vocab_size=300"], out
    )
    assert math.isfinite(ppl)
    lm = LanguageModel.load(out / "checkpoints" / "best.ckpt")
    assert lm.tokenizer.kind == "bpe"
    text = lm.generate("the cat", max_new_tokens=5, seed=0)
    assert text.startswith("the cat")
    assert math.isfinite(lm.score("the cat sat on a mat\n").perplexity)


# ==================================================================================================
# Transformer baseline
# ==================================================================================================
def test_transformer_context_carries_across_windows() -> None:
    torch.manual_seed(0)
    model = TransformerLM(
        V, embedding_dim=16, num_layers=2, num_heads=2, max_len=32, memory=8
    ).eval()
    x = _x(2, 16)
    with torch.no_grad():
        full, _ = model(x)
        first, ctx = model(x[:, :8])
        second, _ = model(x[:, 8:], ctx)
        fresh, _ = model(x[:, 8:])
        long, _ = model(_x(2, 100))  # longer than max_len: read in chunks
    torch.testing.assert_close(torch.cat([first, second], 1), full)
    assert not torch.allclose(fresh, full[:, 8:])
    assert long.shape == (2, 100, V)


def test_transformer_trains_and_generates(corpus_dir: Path, tmp_path: Path) -> None:
    from rnnlm.inference.lm import LanguageModel

    out = tmp_path / "run"
    sizes = [o for o in tiny_overrides(corpus_dir) if not o.startswith("model.hidden_dim")]
    ppl = train_in_process(
        [
            *sizes,
            "data.tokenizer=word",
            "model=transformer",
            "model.num_layers=1",
            "model.num_heads=2",
            "model.max_len=16",
            "model.memory=8",
        ],
        out,
    )
    assert math.isfinite(ppl)
    lm = LanguageModel.load(out / "checkpoints" / "best.ckpt")
    assert lm.generate("the cat", max_new_tokens=20, seed=0).startswith("the cat")


# ==================================================================================================
# Every experiment config composes and trains a few steps (tiny sizes, a local corpus: no download)
# ==================================================================================================
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


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


# ==================================================================================================
# DDP (subprocesses): weight drop with LSTM and GRU, two CPU ranks
# ==================================================================================================
@pytest.mark.slow  # DDP itself is in the default suite (test_train_e2e's shards test)
def test_weight_drop_under_ddp_cpu(corpus_dir: Path, tmp_path: Path) -> None:
    procs = {}
    for cell in CELLS:
        args = [
            "trainer=ddp_cpu",
            *tiny_overrides(corpus_dir),
            "data.tokenizer=word",
            f"model={cell}",
            "model.num_layers=2",
            "model.weight_drop=0.5",
            "model.dropout_hidden=0.2",
            "model.dropout_input=0.2",
            "model.ar_alpha=1",
            "model.tar_beta=1",
            "callbacks.text_sample.max_new_tokens=5",
            f"hydra.run.dir={tmp_path / cell}",
        ]
        procs[cell] = subprocess.Popen(
            [sys.executable, "src/train.py", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for cell, proc in procs.items():
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
        ckpt = torch.load(tmp_path / cell / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["rnnlm"]["config"]["trainer"]["devices"] == 2
        assert ckpt["rnnlm"]["config"]["model"]["weight_drop"] == 0.5


# ==================================================================================================
# The quality benchmark's quick mode
# ==================================================================================================
def _bench_quality_quick(corpus: Path, out: Path, *args: str) -> str:
    """`python bench/quality.py --quick` on `corpus` for both levels; the written report."""
    proc = subprocess.run(
        [
            sys.executable,
            "bench/quality.py",
            "--quick",
            *args,
            "--word-data",
            str(corpus),
            "--char-data",
            str(corpus),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out.read_text()


@pytest.mark.slow  # the benchmark harness, like test_bench.py's; `make test-slow` runs it
def test_bench_quality_quick_writes_its_table(corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "quality.md"
    out.write_text("# Quality\n\nkept text\n")
    text = _bench_quality_quick(corpus_dir, out)
    assert "kept text" in text and "bench-quality:begin" in text
    for name in (
        "experiment=pytorch_example",
        "experiment=wt2_budget",
        "experiment=tinyshakespeare_char",
        "experiment=cells_word model=mingru",
        "experiment=cells_char model=mingru",
    ):
        assert name in text
    assert (
        "word level, training alone: rnnlm / classic" in text
        and "char level, training alone:" in text
    )
    assert "+ continuous cache (window" in text and "+ dynamic evaluation (lr" in text
    assert (
        "word level, mingru (experiment=cells_word model=mingru): perplexity / wt2_budget's" in text
    )
    assert "char level, mingru: " in text and "(target <= 1.38:" in text


@pytest.mark.slow
def test_bench_quality_variant_rows_name_their_overrides(corpus_dir: Path, tmp_path: Path) -> None:
    # docs/cells.md's `make bench-quality ARGS="--only cells --cell mingru"`, with another cell
    args = [
        "--only",
        "char,cells",
        "--cell",
        "qrnn",
        "--set",
        "model.dropout=0.3",
        "--no-adaptation",
    ]
    text = _bench_quality_quick(corpus_dir, tmp_path / "quality.md", *args)
    # the variant's row says what it changed; --no-adaptation leaves out the dynamic-evaluation row
    assert "| rnnlm (experiment=tinyshakespeare_char) with model.dropout=0.3 | char |" in text
    assert "| qrnn (experiment=cells_char model=qrnn) with model.dropout=0.3 | char |" in text
    assert "| qrnn (experiment=cells_word model=qrnn) with model.dropout=0.3 | word |" in text
    assert "+ dynamic evaluation (lr" not in text
