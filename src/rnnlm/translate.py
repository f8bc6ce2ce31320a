"""Translating with a checkpoint (`src/translate.py`): one sentence (`text=`) or a file of lines
(`input=`), streamed batch by batch so that a file of any length starts printing at once."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from omegaconf import DictConfig

from rnnlm.errors import UserError
from rnnlm.inference.device import resolve_device
from rnnlm.inference.translator import Translator


def translate(cfg: DictConfig) -> list[str]:
    if (cfg.text is None) == (cfg.input is None):
        raise UserError(
            'translate: give one of text="a sentence" or input=<file of sentences> (- for standard input)'
        )
    if cfg.batch_size < 1:
        raise UserError(f"batch_size={cfg.batch_size} must be >= 1")
    translator = Translator.load(cfg.ckpt_path, device=resolve_device(cfg.device))
    settings = {
        "beam_size": cfg.beam_size,
        "length_penalty": cfg.length_penalty,
        "max_len": cfg.max_len,
    }
    if cfg.text is not None:
        out = translator.translate([str(cfg.text)], batch_size=cfg.batch_size, **settings)
        print(out[0], flush=True)
        return out
    done = []
    with _lines(str(cfg.input)) as lines, _sink(cfg.output) as sink:
        for line in translator.stream(lines, batch_size=cfg.batch_size, **settings):
            print(line, file=sink, flush=True)
            done.append(line)
    return done


@contextlib.contextmanager
def _lines(name: str) -> Iterator[Iterator[str]]:
    if name == "-":
        yield iter(sys.stdin)
        return
    path = Path(name).expanduser()
    if not path.is_file():
        raise UserError(f"input={name}: no such file; give a text file with one sentence a line")
    with path.open(encoding="utf-8") as f:
        yield iter(f)


@contextlib.contextmanager
def _sink(name: str | None) -> Iterator[IO[str]]:
    if name is None:
        yield sys.stdout
        return
    path = Path(name).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        yield f
