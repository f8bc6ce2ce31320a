"""Rules on a model's config that read several keys at once and hold before any weight exists, shared by
the model that relies on them and the pre-start config check (rnnlm/config/keys.py). Imports nothing heavy, so the check answers
without loading torch."""

from __future__ import annotations

from collections.abc import Sequence

SOFTMAXES = ("full", "adaptive")


def check_tie_weights(
    tie_weights: bool, embedding_dim: int, hidden_dim: int, last_hidden_dim: int | None = None
) -> None:
    """Tied weights share the embedding with the decoder, which reads the last layer's output."""
    out_dim = last_hidden_dim or hidden_dim
    if tie_weights and embedding_dim != out_dim:
        which = "model.last_hidden_dim" if last_hidden_dim else "model.hidden_dim"
        raise ValueError(
            f"model.tie_weights=true needs model.embedding_dim == {which} "
            f"(got {embedding_dim} and {out_dim}): set them equal or set model.tie_weights=false"
        )


def check_forget_bias(forget_bias: float | None, cell: str) -> None:
    if forget_bias is not None and cell != "lstm":
        raise ValueError(
            f"model.forget_bias={forget_bias} applies to LSTM cells only (got model.cell={cell!r}): "
            "set model.forget_bias=null or use model=lstm"
        )


def check_output_layer(
    softmax: str,
    tie_weights: bool,
    adaptive_cutoffs: Sequence[int] | None = None,
    adaptive_div_value: float | None = None,
    sparse_embedding: bool = False,
    vocab_size: int | None = None,
) -> list[int]:
    """The decoder's settings fit together; returns the adaptive cutoffs as ints ([] for a full softmax).
    Without `vocab_size` (the config check, before the corpus is read) the cutoffs' upper end is not
    checked."""
    if softmax not in SOFTMAXES:
        raise ValueError(f"model.softmax={softmax!r} is not known; choose one of {list(SOFTMAXES)}")
    cutoffs: list[int] = []
    if softmax == "adaptive":
        cutoffs = [int(c) for c in (adaptive_cutoffs or ())]
        if not cutoffs:
            raise ValueError(
                "model.softmax=adaptive needs model.adaptive_cutoffs, increasing ids that split the "
                "vocabulary (most frequent first) into a head and tail clusters, e.g. [20000, 100000]"
            )
        top = vocab_size - 1 if vocab_size is not None else None
        if (
            cutoffs != sorted(set(cutoffs))
            or cutoffs[0] < 1
            or top is not None
            and cutoffs[-1] > top
        ):
            raise ValueError(
                f"model.adaptive_cutoffs={cutoffs} must be increasing integers between 1 and "
                f"vocab_size - 1 = {top}: set cutoffs that fit this vocabulary, or model.softmax=full"
                if top is not None
                else f"model.adaptive_cutoffs={cutoffs} must be increasing integers >= 1"
            )
        if tie_weights and adaptive_div_value is not None:
            raise ValueError(
                f"model.adaptive_div_value={adaptive_div_value} does not apply with "
                "model.tie_weights=true (the tied clusters read the embedding's rows, without a "
                "narrower projection): set model.adaptive_div_value=null or model.tie_weights=false"
            )
    if sparse_embedding and tie_weights:
        raise ValueError(
            "model.sparse_embedding=true cannot be combined with model.tie_weights=true (the tied "
            "decoder needs a dense gradient): set one of them to false"
        )
    return cutoffs
