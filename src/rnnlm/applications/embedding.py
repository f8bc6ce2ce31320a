"""Text embeddings from a language model: one unit vector per text, pooled over its tokens.

`SearchIndex` (applications/search.py) and `scripts/applications.py` build on `embed`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rnnlm.errors import UserError
from rnnlm.inference.lm import LanguageModel
from rnnlm.models.modes import eval_mode

POOLINGS = ("mean", "last", "max")


def embed(
    lm: LanguageModel, texts: str | Sequence[str], pooling: str = "mean", batch_size: int = 64
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
        ids = lm.tokenizer.encode(text)
        if not ids:
            raise UserError(f"text {i} ({text[:40]!r}) has no tokens to embed")
        encoded.append(ids)
    out = torch.empty(len(encoded), lm.model.hidden_dim)
    # Longest first, so each batch holds texts of similar length and little padding.
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    with torch.no_grad(), eval_mode(lm.model):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = _embed_batch(lm, [encoded[i] for i in idx], pooling)
    return out


def _embed_batch(lm: LanguageModel, batch: list[list[int]], pooling: str) -> torch.Tensor:
    """(B, H) unit vectors of texts of similar length, right-padded into one (B, 1 + T) batch."""
    lengths = torch.tensor([len(ids) for ids in batch])
    x = torch.zeros(len(batch), int(lengths.max()) + 1, dtype=torch.long)
    x[:, 0] = lm.start_id
    for row, ids in enumerate(batch):
        x[row, 1 : 1 + len(ids)] = torch.tensor(ids)
    feats, _ = lm.model.features(x.to(lm.device))  # (B, 1 + T, H)
    # Right padding never changes the outputs at real tokens: the network reads left to right.
    feats = feats[:, 1:].float().cpu()  # the text's own tokens
    mask = torch.arange(feats.size(1))[None, :] < lengths[:, None]  # (B, T)
    if pooling == "mean":
        pooled = (feats * mask[..., None]).sum(1) / lengths[:, None]
    elif pooling == "last":
        pooled = feats[torch.arange(len(batch)), lengths - 1]
    else:
        pooled = feats.masked_fill(~mask[..., None], float("-inf")).amax(1)
    return F.normalize(pooled, dim=-1)
