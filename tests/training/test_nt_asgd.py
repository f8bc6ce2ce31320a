"""NT-ASGD: the switch to averaging, the average, and the averaged weights in evaluation and checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides, train_in_process
from rnnlm.training.nt_asgd import NTASGD


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
