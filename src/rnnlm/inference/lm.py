"""`LanguageModel`: a trained model plus its tokenizer, usable without a Trainer.

    from rnnlm import LanguageModel
    lm = LanguageModel.load("outputs/train/runs/<run>/checkpoints/best.ckpt")
    print(lm.generate("ROMEO:", max_new_tokens=100))
    lm.score("To be, or not to be").perplexity
    lm.save_pretrained("shakespeare-gru")        # the Hub format (inference/hub.py); push_to_hub(repo_id)
    LanguageModel.load("shakespeare-gru")        # a checkpoint, a pretrained folder or a Hub repo id

Training-time samples, `src/generate.py`, `src/eval.py`, `src/search.py` and `src/rank.py` all go
through this class. What is built on top of it lives above it: test-time adaptation (the continuous
cache, dynamic evaluation, their tuning) in rnnlm.adaptation, embedding and ranking in
rnnlm.applications.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnlm.data.layout import windows
from rnnlm.data.tokenizers import Tokenizer, tokenizer_from_dict
from rnnlm.inference import hub
from rnnlm.inference.checkpoint import CheckpointError, build_from_checkpoint, load_checkpoint
from rnnlm.inference.decoding import continuation, decode_pieces, encode_text, start_id
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
        model_config: dict | None = None,
        training: dict | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or {}  # the training run's composed config
        self.path = Path(path) if path is not None else None  # the checkpoint it was loaded from
        self.model_config = model_config  # the model's _target_ and arguments: rebuilds it
        self.training = training or {}  # command, best_val_loss, tokens_seen (the model card's)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> LanguageModel:
        """A `.ckpt` written by src/train.py, a folder saved by `save_pretrained`, or a Hub repo id."""
        if hub.is_pretrained(path):
            return cls.from_pretrained(path, device=device)
        ckpt = load_checkpoint(path, map_location=device)
        if ckpt["rnnlm"].get("task") == "translation":
            raise CheckpointError(
                f"{path} is a translation checkpoint, not a language model: translate with "
                f'src/translate.py ckpt_path={path} text="..." (or rnnlm.Translator.load)'
            )
        hp = ckpt["hyper_parameters"]
        model = build_from_checkpoint(
            hp["model"], MODEL_CLASSES, path, "model", vocab_size=hp["vocab_size"]
        )
        prefix = "model."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        model.load_state_dict(state)
        model.to(device).eval()
        meta = ckpt["rnnlm"]
        training = {k: meta.get(k) for k in ("command", "best_val_loss", "tokens_seen")}
        return cls(
            model,
            tokenizer_from_dict(meta["tokenizer"]),
            meta.get("config"),
            path=Path(path).expanduser().resolve(),
            model_config=hp["model"],
            training={**training, "config": meta.get("config")},
        )

    @classmethod
    def from_pretrained(
        cls,
        name: str | Path,
        device: str | torch.device = "cpu",
        revision: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> LanguageModel:
        """A model saved by `save_pretrained`: a local folder or a Hub repo id (`user/name`)."""
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_model
        except ImportError:
            raise hub.PretrainedError(
                f"reading a pretrained folder needs safetensors: {hub.EXTRA}"
            ) from None

        found = hub.read_pretrained(name, revision=revision, cache_dir=cache_dir)
        cfg = found.config
        if isinstance(cfg.get("model"), dict) and cfg["model"].get("task") == "translation":
            raise hub.PretrainedError(
                f"{name} holds a translation model, not a language model: load it with "
                f'rnnlm.Translator.load, or src/translate.py ckpt_path={name} text="..."'
            )
        model = build_from_checkpoint(
            cfg["model"], MODEL_CLASSES, found.source, "model", vocab_size=cfg["vocab_size"]
        )
        try:
            load_model(model, str(found.weights), strict=True)
        except (SafetensorError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0]
            raise hub.PretrainedError(
                f"{name}: {hub.WEIGHTS} does not fit the model {hub.CONFIG} describes ({first}): "
                "export it again"
            ) from None
        model.to(device).eval()
        training = cfg.get("training") or {}
        local = Path(name).expanduser()
        return cls(
            model,
            tokenizer_from_dict(found.tokenizer),
            training.get("config"),
            path=local.resolve() if local.is_dir() else None,
            model_config=cfg["model"],
            training=training,
        )

    def save_pretrained(self, folder: str | Path) -> Path:
        """The model in the Hub format (inference/hub.py): safetensors weights, JSON config and
        tokenizer, a model card. `from_pretrained(folder)` gives the same logits back."""
        if self.model_config is None:
            raise ValueError(
                "save_pretrained needs model_config (the model's _target_ and arguments)"
            )
        vocab = getattr(self.model, "vocab_size", None) or self.tokenizer.vocab_size
        return hub.write_pretrained(
            folder, self.model, self.model_config, vocab, self.tokenizer.to_dict(), self.training
        )

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None) -> str:
        """Save in the Hub format and upload to the Hub repo `repo_id` (created if absent); its URL."""
        return hub.push_pretrained(self.save_pretrained, repo_id, private=private, token=token)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_text(self, text: str) -> tuple[list[int], int]:
        """Token ids of running text (a prompt, a context, a continuation) and the unknown count."""
        return encode_text(self.tokenizer, text)

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
        ids, new = self._sampler(prompt, max_new_tokens, temperature, top_k, top_p, seed)
        all_ids = list(ids)
        if on_text is None:
            all_ids.extend(new)
        else:
            for piece in decode_pieces(self.tokenizer, ids, new, all_ids):
                on_text(piece)
        return prompt + continuation(self.tokenizer, ids, all_ids)

    def stream(
        self,
        prompt: str = "",
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """The continuation of `prompt`, piece by piece as it is sampled (`generate`'s on_text
        pieces; the server streams them). The arguments are checked now, not at the first piece."""
        ids, new = self._sampler(prompt, max_new_tokens, temperature, top_k, top_p, seed)
        return decode_pieces(self.tokenizer, ids, new, list(ids))

    def _sampler(
        self,
        prompt: str,
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        seed: int | None,
    ) -> tuple[list[int], Iterator[int]]:
        """The prompt's ids and an iterator of the sampled ids (the model runs as it is read)."""
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

        def sample() -> Iterator[int]:
            # no_grad is per thread and a reader may resume this from another thread (the server):
            # each model call enters it itself
            with eval_mode(self.model):
                with torch.no_grad():
                    logits, hidden = self.model(
                        torch.tensor([ids], device=self.device)
                    )  # (1, T, V)
                for i in range(max_new_tokens):
                    tok = next_token(logits[:, -1], temperature, top_k, top_p, generator)  # (1,)
                    yield int(tok)
                    if i + 1 < max_new_tokens:
                        with torch.no_grad():
                            logits, hidden = self.model(tok.view(1, 1), hidden)

        return ids, sample()

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
        return start_id(self.tokenizer)
