"""`LanguageModel`: a trained model plus its tokenizer, usable without a Trainer.

    from rnnlm import LanguageModel
    lm = LanguageModel.load("outputs/train/runs/<run>/checkpoints/best.ckpt")
    print(lm.generate("ROMEO:", max_new_tokens=100))
    lm.score("To be, or not to be").perplexity
    lm.embed(["a king speaks of war", "the sea"])            # (2, H) unit vectors
    lm.rank("To be, or not to", ["be", "go", "sleep"])       # best continuation first

Training-time samples, `src/generate.py`, `src/eval.py`, `src/search.py` and `src/rank.py` all go
through this class. Test-time adaptation of a loaded model (the continuous cache, dynamic evaluation and
their tuning) is rnnlm.adaptation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rnnlm.checkpoint import build_from_checkpoint, load_checkpoint
from rnnlm.data.layout import windows
from rnnlm.data.tokenizers import EOS, Tokenizer, tokenizer_from_dict
from rnnlm.errors import UserError
from rnnlm.models import RNNLM, TransformerLM
from rnnlm.models.modes import eval_mode
from rnnlm.sampling import check_sampling, next_token

POOLINGS = ("mean", "last", "max")
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


@dataclass(frozen=True)
class Ranked:
    """One candidate continuation scored by `LanguageModel.rank` (log-probabilities in nats)."""

    rank: int  # 1 = most likely under the ordering asked for
    candidate: str
    logprob: float  # log p(candidate's tokens | context), summed over its tokens
    mean_logprob: float  # logprob / num_tokens: the length-normalised score
    num_tokens: int
    unknown: int  # tokens of the candidate outside the vocabulary (scored as <unk>)


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

    def _encode(self, text: str) -> tuple[list[int], int]:
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

    # -- applications: embeddings and likelihood ranking ---------------------------------------------
    @property
    def start_id(self) -> int:
        """The line-break token (`\\n` for characters, `<eos>` for words) every text is read after."""
        start = "\n" if self.tokenizer.kind == "char" else EOS
        return self.tokenizer.stoi.get(start, 0)

    @torch.no_grad()
    @_in_eval_mode
    def embed(
        self, texts: str | Sequence[str], pooling: str = "mean", batch_size: int = 64
    ) -> torch.Tensor:
        """One unit-length vector per text: (N, H) float32 on the CPU, H = the model's hidden size.

        Each text is read from the start of a line (after the line-break token, from a zero state)
        and the last layer's outputs at the text's own tokens are pooled, then L2-normalised, so the
        dot product of two rows is their cosine similarity.

        pooling:
          - "mean" (default): the average over all the text's tokens. Every token contributes
            equally, so the vector describes the whole text rather than its end. The last state
            alone is a poor summary for a language model: it is trained to predict the *next*
            token, so it mostly encodes the last few tokens.
          - "last": the output at the text's last token (what the model carries forward).
          - "max": the element-wise maximum over tokens.
        `scripts/applications.py` measures all three on next-passage retrieval (docs/applications.md):
        for a small model trained only to predict the next token, all three are weak and close to
        each other; the vectors reflect a text's form more than its meaning.

        Deterministic: dropout is off and no sampling is involved; the same texts give the same
        vectors (up to float rounding when the same text is batched with different neighbours).
        """
        if pooling not in POOLINGS:
            raise UserError(f"pooling={pooling!r} is not known; choose one of {list(POOLINGS)}")
        if isinstance(texts, str):
            texts = [texts]
        encoded = []
        for i, text in enumerate(texts):
            ids = self.tokenizer.encode(text)
            if not ids:
                raise UserError(f"text {i} ({text[:40]!r}) has no tokens to embed")
            encoded.append(ids)
        out = torch.empty(len(encoded), self.model.hidden_dim)
        # Longest first, so each batch holds texts of similar length and little padding.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            lengths = torch.tensor([len(encoded[i]) for i in idx])
            x = torch.zeros(len(idx), int(lengths.max()) + 1, dtype=torch.long)
            x[:, 0] = self.start_id
            for row, i in enumerate(idx):
                x[row, 1 : 1 + len(encoded[i])] = torch.tensor(encoded[i])
            feats, _ = self.model.features(x.to(self.device))  # (B, 1 + T, H)
            # Right padding never changes the outputs at real tokens: the network reads left to right.
            feats = feats[:, 1:].float().cpu()  # the text's own tokens
            mask = torch.arange(feats.size(1))[None, :] < lengths[:, None]  # (B, T)
            if pooling == "mean":
                pooled = (feats * mask[..., None]).sum(1) / lengths[:, None]
            elif pooling == "last":
                pooled = feats[torch.arange(len(idx)), lengths - 1]
            else:
                pooled = feats.masked_fill(~mask[..., None], float("-inf")).amax(1)
            out[idx] = F.normalize(pooled, dim=-1)
        return out

    @torch.no_grad()
    @_in_eval_mode
    def rank(
        self,
        context: str,
        candidates: Sequence[str],
        normalize: bool = False,
        max_batch_tokens: int = 8192,
    ) -> list[Ranked]:
        """Candidate continuations of `context`, most likely first.

        Each candidate is scored by log p(candidate | context), the sum of its tokens'
        log-probabilities (nats), and by that sum divided by its token count (`mean_logprob`).
        The order follows the total (`normalize=False`: the probability of the whole continuation,
        which favours short candidates) or the per-token mean (`normalize=True`). Ties keep the
        input order.

        The context is read from the start of a line, and each candidate is appended to it as
        running text: characters are appended as they are (put the space in the context or the
        candidate: `rank("To be or not to ", ["be", "go"])`); words are separated by whitespace.
        A candidate that ends with a line break is scored with its `<eos>` (word level).
        The context is read once; the candidates go through in batches of similar length, at most
        `max_batch_tokens` padded tokens each.
        """
        if isinstance(candidates, str) or not candidates:
            raise UserError("candidates must be a non-empty list of strings")
        ctx_ids, _ = self._encode(context)
        ctx_ids = [self.start_id, *ctx_ids]
        cand_ids: list[list[int]] = []
        unknowns: list[int] = []
        for i, cand in enumerate(candidates):
            ids, unknown = self._encode(str(cand))
            if not ids:
                raise UserError(f"candidate {i} ({cand!r}) has no tokens to score")
            cand_ids.append(ids)
            unknowns.append(unknown)
        logits, hidden = self.model(torch.tensor([ctx_ids], device=self.device))
        first = logits[0, -1].float().log_softmax(-1)  # (V,) the distribution after the context
        totals = [0.0] * len(cand_ids)
        by_length = sorted(range(len(cand_ids)), key=lambda i: len(cand_ids[i]))
        start = 0
        while start < len(by_length):
            longest = len(cand_ids[by_length[start]])
            stop = start + 1
            while stop < len(by_length):  # grow the batch while it fits the token budget
                longest_next = len(cand_ids[by_length[stop]])
                if (stop - start + 1) * longest_next > max_batch_tokens:
                    break
                longest, stop = longest_next, stop + 1
            idx = by_length[start:stop]
            start = stop
            lengths = torch.tensor([len(cand_ids[i]) for i in idx], device=self.device)
            y = torch.zeros(len(idx), longest, dtype=torch.long, device=self.device)
            for row, i in enumerate(idx):
                y[row, : len(cand_ids[i])] = torch.tensor(cand_ids[i])
            logp = first[y[:, :1]]  # (N, 1): each candidate's first token
            if longest > 1:
                # Every candidate continues the same state: the context is read once.
                out, _ = self.model(y[:, :-1], _repeat_hidden(hidden, len(idx)))  # (N, L-1, V)
                target = out.gather(-1, y[:, 1:, None]).squeeze(-1).float()
                rest = target - out.float().logsumexp(-1)  # log-softmax at the targets only
                logp = torch.cat([logp, rest], dim=1)  # (N, L)
            mask = torch.arange(longest, device=self.device)[None, :] < lengths[:, None]
            for i, total in zip(idx, (logp * mask).sum(1).tolist(), strict=True):
                totals[i] = total
        rows = [
            (str(c), total, total / len(ids), len(ids), unk)
            for c, total, ids, unk in zip(candidates, totals, cand_ids, unknowns, strict=True)
        ]
        key = 2 if normalize else 1
        order = sorted(range(len(rows)), key=lambda i: -rows[i][key])  # stable: ties keep order
        return [Ranked(r + 1, *rows[i]) for r, i in enumerate(order)]


def _repeat_hidden(hidden, n: int):  # noqa: ANN001, ANN202
    """A batch-1 hidden state repeated for n rows: every state tensor has the batch at dim 1 ((L, 1, H),
    an LSTM's (h, c) pair, a parallel cell's (1, 1, ...) tensors)."""
    if isinstance(hidden, tuple):
        return tuple(h.expand(h.size(0), n, *h.shape[2:]).contiguous() for h in hidden)
    return hidden.expand(hidden.size(0), n, *hidden.shape[2:]).contiguous()
