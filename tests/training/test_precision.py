"""trainer.precision=auto: bf16 mixed precision where the CPU computes bf16 natively, float32 elsewhere;
an explicit value wins; a bf16 run trains like a float32 one."""

from __future__ import annotations

import json
import math

import pytest

from conftest import train_in_process
from rnnlm.training import precision
from rnnlm.training.precision import choose_precision, cpu_bf16_units

AMX = frozenset({"avx512f", "amx_tile", "amx_bf16", "avx512_bf16"})
AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})
EPYC = frozenset({"avx2", "avx512f"})  # AVX-512 without BF16: bf16 would be emulated


@pytest.fixture
def flags(monkeypatch):
    def use(value: frozenset[str]) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: value)

    return use


def test_auto_reads_the_cpu_flags(flags):
    flags(AMX)
    assert cpu_bf16_units() == ["AMX-BF16", "AVX-512 BF16"]
    chosen = choose_precision("auto", "cpu")
    assert chosen.value == "bf16-mixed" and "AMX-BF16" in chosen.reason
    flags(AVX512_BF16)
    assert choose_precision("auto", "cpu").value == "bf16-mixed"
    flags(EPYC)
    chosen = choose_precision("auto", "cpu")
    assert chosen.value == "32-true" and "neither AMX nor AVX-512 BF16" in chosen.reason


def test_an_explicit_precision_wins(flags):
    flags(AMX)
    assert choose_precision("32-true", "cpu") == ("32-true", "set by trainer.precision")
    flags(EPYC)
    assert choose_precision("bf16-mixed", "cpu").value == "bf16-mixed"


def test_the_real_flags_are_read():
    """On Linux /proc/cpuinfo has the flags; whatever this CPU is, auto agrees with them."""
    with open("/proc/cpuinfo") as f:
        has = any(flag in line.split() for line in f if line.startswith("flags") for flag in AMX)
    assert precision.cpu_flags() or not has
    expected = "bf16-mixed" if cpu_bf16_units() else "32-true"
    assert choose_precision("auto", "cpu").value == expected


def _run(corpus_dir, out, value: str) -> dict:
    train_in_process(
        [
            "data=text_files",
            f"data.path={corpus_dir}",
            "model=lstm",
            "model.embedding_dim=128",  # BF16_MIN_WIDTH["lstm"]: the recurrence runs in bf16 too
            "model.hidden_dim=128",
            "model.num_layers=1",
            "data.batch_size=8",
            "data.bptt=16",
            "optim.lr=0.003",
            "trainer.max_epochs=2",
            "trainer.val_check_interval=1.0",
            "test=false",
            "logger=[]",
            "callbacks=none",
            f"trainer.precision={value}",
        ],
        out,
    )
    return json.loads((out / "result.json").read_text())


def test_bf16_trains_like_float32(corpus_dir, tmp_path, capsys):
    """The same run in bf16-mixed and in 32-true: every epoch's validation loss within 1% (a bf16
    path that diverged, e.g. a bf16 log-sum-exp or a lost loss term, would be far off)."""
    fp32 = _run(corpus_dir, tmp_path / "fp32", "32-true")
    bf16 = _run(corpus_dir, tmp_path / "bf16", "bf16-mixed")
    assert (fp32["precision"], bf16["precision"]) == ("32-true", "bf16-mixed")
    printed = capsys.readouterr().out
    assert "precision:          bf16-mixed (set by trainer.precision)" in printed
    curves = []
    for run in ("fp32", "bf16"):
        lines = (tmp_path / run / "validations.jsonl").read_text().splitlines()
        curves.append([math.log(json.loads(line)["val_ppl"]) for line in lines])
    assert len(curves[0]) == len(curves[1]) == 2
    assert curves[0][-1] < curves[0][0]  # it learned something
    for a, b in zip(*curves, strict=True):
        assert abs(b - a) / a < 0.01, curves
