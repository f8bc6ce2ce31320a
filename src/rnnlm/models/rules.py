"""Rules on a model's config that hold before any weight exists, shared by the model that relies on
them and the pre-start config check (rnnlm.config.check). Imports nothing heavy, so the check answers
without loading torch."""

from __future__ import annotations


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
