"""Text in and out of token ids for generation: the rules LanguageModel, the ONNX runtime and the
server share (a prompt that does not end its line stays open; generation without a prompt starts
after a line break; a character is shown only once all its bytes are sampled)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rnnlm.data.tokenizers import EOS, Tokenizer


def decode_pieces(
    tokenizer: Tokenizer, ids: list[int], new_ids: Iterable[int], all_ids: list[int]
) -> Iterator[str]:
    """The text each id of `new_ids` adds after `ids`, as it comes (`all_ids` collects the ids).

    A multi-byte character whose bytes have not all been sampled yet (byte and BPE tokenizers)
    decodes as U+FFFD for now: it is held back until it is complete.
    """
    prefix, text = tokenizer.decode(ids), ""
    for tok in new_ids:
        all_ids.append(tok)
        stable = tokenizer.decode(all_ids)[len(prefix) :].rstrip("\ufffd")
        if stable.startswith(text) and len(stable) > len(text):
            yield stable[len(text) :]
            text = stable
    final = tokenizer.decode(all_ids)[len(prefix) :]
    if final.startswith(text) and final != text:
        yield final[len(text) :]  # what was held back (a character left incomplete)


def continuation(tokenizer: Tokenizer, ids: list[int], all_ids: list[int]) -> str:
    """The text `all_ids` adds after the prompt's `ids` (words get their spaces)."""
    return tokenizer.decode(all_ids)[len(tokenizer.decode(ids)) :]


def encode_text(tokenizer: Tokenizer, text: str) -> tuple[list[int], int]:
    """Token ids of running text and the unknown count: a text that does not end its line is not
    closed with <eos> (word level), so a prompt is continued, not ended."""
    ids, unknown = tokenizer.encode_with_unknowns(text)
    if tokenizer.kind == "word" and ids and not text.endswith("\n"):
        ids = ids[:-1]
    return ids, unknown


def start_id(tokenizer: Tokenizer) -> int:
    """The line-break token (`\\n` for characters, `<eos>` for words): generation without a prompt
    starts after it."""
    return tokenizer.stoi.get("\n" if tokenizer.kind == "char" else EOS, 0)
