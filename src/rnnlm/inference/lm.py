"""`LanguageModel`: a trained model plus its tokenizer, usable without a Trainer.

    from rnnlm import LanguageModel
    lm = LanguageModel.load("outputs/train/runs/<run>/checkpoints/best.ckpt")
    print(lm.generate("ROMEO:", max_new_tokens=100))
    lm.score("To be, or not to be").perplexity

Training-time samples, `src/generate.py`, `src/eval.py`, `src/search.py` and `src/rank.py` all go
through this class. What is built on top of it lives above it: test-time adaptation (the continuous
cache, dynamic evaluation, their tuning) in rnnlm.adaptation, embedding and ranking in
rnnlm.applications.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnlm.data.layout import windows
from rnnlm.data.tokenizers import EOS, Tokenizer, tokenizer_from_dict
from rnnlm.inference.checkpoint import build_from_checkpoint, load_checkpoint
from rnnlm.inference.sampling import check_sampling, next_token
from rnnlm.models import RNNLM, TransformerLM
from rnnlm.models.modes import eval_mode

# The models a checkpoint may ask for (its config's `_target_`): nothing else is built from one.
MODEL_CLASSES: dict[str, type] = {
    "rnnlm.models.RNNLM": RNNLM,
    "rnnlm.models.rnn_lm.RNNLM": RNNLM,
    "rnnlm.models.TransformerLM": TransformerLM,
    "rnnlm.models.transformer.TransformerLM": TransformerLM,
}


def _in_eval_mode(method: Callable) -> Callable:
    """A LanguageModel method run with its model in eval mode (models/modes.py), mode restored after."""

    @functools.wraps(method)
    def wrapper(self: LanguageModel, *args: Any, **kwargs: Any) -> Any:
        with eval_mode(self.model):
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class Score:
    """Log-probabilities (nats) of each token of a text given the tokens before it."""

    tokens: list[str]  # the tokens scored (the first token of the text has no context and is not)
    logprobs: list[float]
    unknown: int  # tokens of the text outside the vocabulary (scored as <unk>)

    @property
    def total_logprob(self) -> float:
        return sum(self.logprobs)

    @property
    def mean_loss(self) -> float:
        return -self.total_logprob / max(len(self.logprobs), 1)

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_loss)


class LanguageModel:
    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        config: dict | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or {}
        self.path = Path(path) if path is not None else None  # the checkpoint it was loaded from

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> LanguageModel:
        ckpt = load_checkpoint(path, map_location=device)
        hp = ckpt["hyper_parameters"]
        model = build_from_checkpoint(
            hp["model"], MODEL_CLASSES, path, "model", vocab_size=hp["vocab_size"]
        )
        prefix = "model."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        model.load_state_dict(state)
        model.to(device).eval()
        return cls(
            model,
            tokenizer_from_dict(ckpt["rnnlm"]["tokenizer"]),
            ckpt["rnnlm"].get("config"),
            path=Path(path).expanduser().resolve(),
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_text(self, text: str) -> tuple[list[int], int]:
        """Token ids of running text (a prompt, a context, a continuation) and the unknown count."""
        ids, unknown = self.tokenizer.encode_with_unknowns(text)
        if self.tokenizer.kind == "word" and ids and not text.endswith("\n"):
            ids = ids[:-1]  # a prompt that does not end its line must not be closed with <eos>
        return ids, unknown

    @torch.no_grad()
    @_in_eval_mode
    def generate(
        self,
        prompt: str = "",
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """The prompt followed by up to `max_new_tokens` sampled tokens; `on_text` gets each new piece."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
        # checked before the prompt is read, not at the first token
        check_sampling(temperature, top_k, top_p)
        generator = torch.Generator(device=self.device)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        ids, _ = self.encode_text(prompt)
        if not ids:  # start from a line break when there is nothing to condition on
            ids = [self.start_id]
        x = torch.tensor([ids], device=self.device)  # (1, T)
        logits, hidden = self.model(x)
        # The continuation is what decoding adds after the prompt's own tokens (words get their spaces).
        prefix = self.tokenizer.decode(ids)
        all_ids, text = list(ids), ""
        for _ in range(max_new_tokens):
            tok = next_token(logits[:, -1], temperature, top_k, top_p, generator)  # (1,)
            all_ids.append(int(tok))
            if on_text is not None:
                # A multi-byte character whose bytes have not all been sampled yet (byte and BPE
                # tokenizers) decodes as U+FFFD for now: hold it back until it is complete.
                stable = self.tokenizer.decode(all_ids)[len(prefix) :].rstrip("\ufffd")
                if stable.startswith(text) and len(stable) > len(text):
                    on_text(stable[len(text) :])
                    text = stable
            logits, hidden = self.model(tok.view(1, 1), hidden)
        continuation = self.tokenizer.decode(all_ids)[len(prefix) :]
        if on_text is not None and continuation.startswith(text) and continuation != text:
            on_text(continuation[len(text) :])  # what was held back (a character left incomplete)
        return prompt + continuation

    @torch.no_grad()
    @_in_eval_mode
    def evaluate_stream(self, ids: torch.Tensor, batch_size: int, bptt: int) -> tuple[float, int]:
        """(summed cross-entropy in nats, tokens scored) over a token stream laid out as in training:
        `batch_size` contiguous columns read in windows of `bptt`, hidden state carried across windows."""
        data = windows(ids, batch_size, bptt)
        hidden, nll, count = None, 0.0, 0
        for i in range(len(data)):
            x, y = (t.to(self.device) for t in data[i])  # (B, T)
            loss, hidden = self.model.nll(x, y, hidden, reduction="sum")
            nll += float(loss)
            count += y.numel()
        return nll, count

    @torch.no_grad()
    @_in_eval_mode
    def score(self, text: str) -> Score:
        """Per-token log-probabilities of `text` under the model, and its perplexity."""
        ids, unknown = self.tokenizer.encode_with_unknowns(text)
        if len(ids) < 2:
            raise ValueError("score() needs a text of at least two tokens")
        x = torch.tensor([ids], device=self.device)
        logits, _ = self.model(x[:, :-1])  # (1, T-1, V)
        logp = logits.float().log_softmax(-1).gather(-1, x[:, 1:, None]).squeeze(-1)[0]
        return Score([self.tokenizer.itos[i] for i in ids[1:]], logp.tolist(), unknown)

    @property
    def start_id(self) -> int:
        """The line-break token (`\\n` for characters, `<eos>` for words) every text is read after."""
        start = "\n" if self.tokenizer.kind == "char" else EOS
        return self.tokenizer.stoi.get(start, 0)
