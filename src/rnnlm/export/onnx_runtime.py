"""Generating with an exported graph in ONNX Runtime, no torch needed: the .onnx file is enough.

lm = OnnxLM("model.onnx")
lm.generate("ROMEO:", max_new_tokens=100, temperature=0)   # greedy: PyTorch's text (tests/export)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rnnlm.data.tokenizers import tokenizer_from_dict
from rnnlm.errors import UserError
from rnnlm.inference.decoding import continuation, encode_text


class OnnxLM:
    """An exported model (rnnlm.export.onnx) with its tokenizer, run by ONNX Runtime on the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError(
                "running an ONNX model needs onnxruntime: pip install 'rnnlm[export]'"
            ) from None
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(
                f"{p} does not exist: export one with rnnlm-export onnx ckpt_path=... out={p}"
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise UserError(
                f"{p} is not a readable ONNX graph ({str(err).splitlines()[0]})"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "rnnlm_tokenizer" not in meta:
            raise UserError(f"{p} was not exported by rnnlm (no rnnlm_tokenizer metadata)")
        self.tokenizer = tokenizer_from_dict(json.loads(meta["rnnlm_tokenizer"]))
        self.state_shapes = [tuple(s) for s in json.loads(meta["rnnlm_state"])]
        self.any_length = meta["rnnlm_time"] == "dynamic"
        self.start_id = int(meta["rnnlm_start_id"])
        self.state_names = [i.name for i in self.session.get_inputs()][1:]

    def zero_state(self, batch: int = 1) -> list[np.ndarray]:
        return [np.zeros((s[0], batch, *s[2:]), dtype=np.float32) for s in self.state_shapes]

    def step(
        self, tokens: np.ndarray, state: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """tokens (B, T) int64 -> logits (B, T, V), the new state; T must be 1 unless any_length."""
        feeds = {"tokens": tokens, **dict(zip(self.state_names, state, strict=True))}
        logits, *new = self.session.run(None, feeds)
        return logits, new

    def read(self, ids: list[int], state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """The logits after `ids` (1, V) and the state, in one call where the graph reads any length."""
        if self.any_length:
            logits, state = self.step(np.array([ids], dtype=np.int64), state)
            return logits[:, -1], state
        for i in ids:
            logits, state = self.step(np.array([[i]], dtype=np.int64), state)
        return logits[:, -1], state

    def new_tokens(
        self, prompt: str, max_new_tokens: int, temperature: float = 0.0, seed: int | None = None
    ) -> tuple[list[int], Iterator[int]]:
        """The prompt's ids and an iterator of sampled ids (temperature 0: the most likely each time)."""
        if temperature < 0:
            raise ValueError(f"temperature={temperature} must be >= 0 (0 is greedy decoding)")
        ids = encode_text(self.tokenizer, prompt)[0] or [self.start_id]
        rng = np.random.default_rng(seed)

        def sample() -> Iterator[int]:
            logits, state = self.read(ids, self.zero_state())
            for i in range(max_new_tokens):
                row = logits[0].astype(np.float64)
                if temperature == 0:
                    tok = int(row.argmax())
                else:
                    p = np.exp((row - row.max()) / temperature)
                    tok = int(rng.choice(len(p), p=p / p.sum()))
                yield tok
                if i + 1 < max_new_tokens:
                    logits, state = self.read([tok], state)

        return ids, sample()

    def generate(
        self,
        prompt: str = "",
        max_new_tokens: int = 100,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> str:
        ids, new = self.new_tokens(prompt, max_new_tokens, temperature, seed)
        return prompt + continuation(self.tokenizer, ids, [*ids, *new])
