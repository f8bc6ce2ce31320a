"""`LanguageModel`: a trained model plus its tokenizer, usable without a Trainer.

    from rnnlm import LanguageModel
    lm = LanguageModel.load("outputs/train/runs/<run>/checkpoints/best.ckpt")
    print(lm.generate("ROMEO:", max_new_tokens=100))
    lm.score("To be, or not to be").perplexity

Training-time samples, `src/generate.py` and `src/eval.py` all go through this class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from rnnlm.checkpoint import load_checkpoint
from rnnlm.data.layout import windows
from rnnlm.data.tokenizers import EOS, Tokenizer, tokenizer_from_dict
from rnnlm.sampling import next_token


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
    def __init__(self, model: nn.Module, tokenizer: Tokenizer, config: dict | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or {}

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> LanguageModel:
        ckpt = load_checkpoint(path, map_location=device)
        hp = ckpt["hyper_parameters"]
        model = instantiate(hp["model"], vocab_size=hp["vocab_size"])
        prefix = "model."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        model.load_state_dict(state)
        model.to(device).eval()
        return cls(
            model, tokenizer_from_dict(ckpt["rnnlm"]["tokenizer"]), ckpt["rnnlm"].get("config")
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode(self, text: str) -> tuple[list[int], int]:
        ids, unknown = self.tokenizer.encode_with_unknowns(text)
        if self.tokenizer.kind == "word" and ids and not text.endswith("\n"):
            ids = ids[:-1]  # a prompt that does not end its line must not be closed with <eos>
        return ids, unknown

    @torch.no_grad()
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
        was_training = self.model.training
        self.model.eval()
        generator = torch.Generator(device=self.device)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        ids, _ = self._encode(prompt)
        if not ids:  # start from a line break when there is nothing to condition on
            start = "\n" if self.tokenizer.kind == "char" else EOS
            ids = [self.tokenizer.stoi.get(start, 0)]
        x = torch.tensor([ids], device=self.device)  # (1, T)
        logits, hidden = self.model(x)
        # The continuation is what decoding adds after the prompt's own tokens (words get their spaces).
        prefix = self.tokenizer.decode(ids)
        all_ids, text = list(ids), ""
        for _ in range(max_new_tokens):
            tok = next_token(logits[:, -1], temperature, top_k, top_p, generator)  # (1,)
            all_ids.append(int(tok))
            if on_text is not None:
                new_text = self.tokenizer.decode(all_ids)[len(prefix) :]
                on_text(new_text[len(text) :])
                text = new_text
            logits, hidden = self.model(tok.view(1, 1), hidden)
        if was_training:
            self.model.train()
        return prompt + self.tokenizer.decode(all_ids)[len(prefix) :]

    @torch.no_grad()
    def evaluate_stream(self, ids: torch.Tensor, batch_size: int, bptt: int) -> tuple[float, int]:
        """(summed cross-entropy in nats, tokens scored) over a token stream laid out as in training:
        `batch_size` contiguous columns read in windows of `bptt`, hidden state carried across windows."""
        was_training = self.model.training
        self.model.eval()
        data = windows(ids, batch_size, bptt)
        hidden, nll, count = None, 0.0, 0
        for i in range(len(data)):
            x, y = (t.to(self.device) for t in data[i])  # (B, T)
            loss, hidden = self.model.nll(x, y, hidden, reduction="sum")
            nll += float(loss)
            count += y.numel()
        if was_training:
            self.model.train()
        return nll, count

    @torch.no_grad()
    def score(self, text: str) -> Score:
        """Per-token log-probabilities of `text` under the model, and its perplexity."""
        ids, unknown = self.tokenizer.encode_with_unknowns(text)
        if len(ids) < 2:
            raise ValueError("score() needs a text of at least two tokens")
        was_training = self.model.training
        self.model.eval()
        x = torch.tensor([ids], device=self.device)
        logits, _ = self.model(x[:, :-1])  # (1, T-1, V)
        logp = logits.float().log_softmax(-1).gather(-1, x[:, 1:, None]).squeeze(-1)[0]
        if was_training:
            self.model.train()
        return Score([self.tokenizer.itos[i] for i in ids[1:]], logp.tolist(), unknown)
