"""The measurements of docs/applications.md: task builders, baselines and accuracy.

Both tasks are built from held-out text only, deterministically for a seed
(`numpy.random.default_rng(seed)`), so every method is scored on the same items.

- Next-passage retrieval (`build_retrieval_task`): given passage i, find passage i + 1 among
  `num_candidates` passages (the true one and distractors drawn from the same text).
- Cloze (`build_cloze_task`): the last word of a line, against distractors drawn from the training
  vocabulary with matched frequency, so that word frequency alone cannot tell them apart.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rnnlm.errors import UserError

# A bare word: letters, optionally with inner apostrophes or hyphens (o'er, Ague-cheek).
WORD = re.compile(r"^[A-Za-z]+(?:['\-][A-Za-z]+)*$")
# The last whitespace token of a line: the word and the punctuation glued after it.
LAST_WORD = re.compile(r"(\S+?)([^\w\s']*)\s*$")


# -- next-passage retrieval ----------------------------------------------------------------------
@dataclass(frozen=True)
class RetrievalItem:
    query: int  # index of the query passage
    candidates: tuple[int, ...]  # passage indices, the answer among them
    answer: int  # position of the true next passage (query + 1) in `candidates`


def build_retrieval_task(
    passages: Sequence[str], num_queries: int = 500, num_candidates: int = 100, seed: int = 0
) -> list[RetrievalItem]:
    """`num_queries` items (fewer if the text is short) over consecutive passages.

    Queries are passages that have a successor, drawn without replacement. The distractors are
    other passages of the same text, never the query itself nor a passage whose text equals the
    query's or the answer's (a repeated "[Exit.]" would make the answer ambiguous). The answer's
    position among the candidates is random.
    """
    n = len(passages)
    if num_candidates < 2:
        raise UserError(f"num_candidates={num_candidates} must be >= 2")
    if n < num_candidates + 1:
        raise UserError(
            f"the text has {n} passages, too few for {num_candidates} candidates and a query"
        )
    rng = np.random.default_rng(seed)
    queries = rng.permutation(n - 1)[:num_queries]
    items = []
    for q in queries.tolist():
        a = q + 1
        banned = {passages[q], passages[a]}
        distractors: list[int] = []
        seen = {q, a}
        while len(distractors) < num_candidates - 1:
            for j in rng.permutation(n).tolist():
                if j not in seen and passages[j] not in banned:
                    distractors.append(j)
                    seen.add(j)
                    if len(distractors) == num_candidates - 1:
                        break
            else:
                raise UserError(
                    f"the text has too few distinct passages for {num_candidates} candidates"
                )
        pos = int(rng.integers(num_candidates))
        cands = distractors[:pos] + [a] + distractors[pos:]
        items.append(RetrievalItem(q, tuple(cands), pos))
    return items


# -- cloze ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClozeItem:
    context: str  # the text before the missing word (earlier lines and the line's beginning)
    candidates: tuple[str, ...]
    answer: int  # position of the true word in `candidates`
    line: int  # 1-based line of the held-out text


def word_counts(text: str) -> Counter:
    """Counts of the bare words (see `WORD`) among the whitespace tokens of `text`."""
    return Counter(t for t in text.split() if WORD.match(t))


def build_cloze_task(
    heldout: str,
    counts: Counter,
    num_items: int = 1000,
    num_distractors: int = 4,
    seed: int = 0,
    window: int = 50,
    min_count: int = 2,
    min_words: int = 4,
    context_lines: int = 2,
) -> list[ClozeItem]:
    """Cloze items from the lines of `heldout`, distractors from the vocabulary of `counts`.

    Line-final word: the line's last whitespace token without trailing punctuation ("question:" ->
    "question"), kept when it is a bare word with at least `min_count` occurrences in `counts`
    (the training text) and the line has at least `min_words` words. The context is the
    `context_lines` lines before it and the line up to the word (the punctuation after the word is
    not part of any candidate).

    Matched frequency: the vocabulary (bare words with count >= `min_count`) is sorted by count
    (equal counts in a seeded random order); a band of `window` consecutive ranks that contains the answer at a random offset is chosen, and
    the distractors are drawn from it (never the answer, nor the answer in another case). As the
    answer sits at a uniformly random place in its band, picking the most frequent candidate
    (`unigram_choice`) is right about as often as chance.
    """
    if num_distractors < 1 or window <= num_distractors:
        raise UserError(
            f"cloze window={window}, num_distractors={num_distractors}: need 1 <= num_distractors < "
            "window (the band of ranks holds the answer and its distractors)"
        )
    rng = np.random.default_rng(seed)
    # Sorted by count; words of equal count in a random (seeded) order, not alphabetically, so
    # that a band of rare words is not a run of words with the same first letters.
    words = sorted(w for w, c in counts.items() if c >= min_count)
    shuffled = [words[i] for i in rng.permutation(len(words)).tolist()]
    vocab = sorted(shuffled, key=lambda w: -counts[w])
    if len(vocab) < max(window, num_distractors + 1):
        raise UserError(
            f"the training vocabulary has {len(vocab)} words with count >= {min_count}: too few"
        )
    rank_of = {w: i for i, w in enumerate(vocab)}
    lines = heldout.replace("\r\n", "\n").split("\n")
    eligible: list[tuple[int, str, str]] = []  # (line index, context, answer)
    for i, line in enumerate(lines):
        if len(line.split()) < min_words:
            continue
        m = LAST_WORD.search(line)
        if m is None or m.group(1) not in rank_of:
            continue
        before = lines[max(0, i - context_lines) : i]
        context = "\n".join([*before, line[: m.start(1)]])
        eligible.append((i, context, m.group(1)))
    if not eligible:
        raise UserError("the held-out text has no line that ends with a word of the vocabulary")
    picks = sorted(rng.permutation(len(eligible))[:num_items].tolist())
    items = []
    for k in picks:
        i, context, answer = eligible[k]
        r = rank_of[answer]
        lo = min(max(r - int(rng.integers(window)), 0), len(vocab) - window)
        band = [w for w in vocab[lo : lo + window] if w.lower() != answer.lower()]
        if len(band) < num_distractors:
            # The answer's other spellings ("The", "THE") filled the band: the nearest ranks instead.
            others = [w for w in vocab if w.lower() != answer.lower()]
            if len(others) < num_distractors:
                raise UserError(
                    f"cloze: {answer!r} has only {len(others)} other words in the vocabulary, fewer "
                    f"than num_distractors={num_distractors}"
                )
            band = sorted(others, key=lambda w: abs(rank_of[w] - r))[:window]
        chosen = rng.choice(len(band), size=num_distractors, replace=False)
        words = [band[j] for j in chosen.tolist()]
        pos = int(rng.integers(num_distractors + 1))
        cands = (*words[:pos], answer, *words[pos:])
        items.append(ClozeItem(context, cands, pos, i + 1))
    return items


def unigram_choice(item: ClozeItem, counts: Counter) -> int:
    """The candidate most frequent in training (ties: the first, and the order is random)."""
    freqs = [counts[c] for c in item.candidates]
    return int(np.argmax(freqs))


# -- accuracy ------------------------------------------------------------------------------------
def topk_accuracy(scores: np.ndarray, answers: Sequence[int], k: int) -> float:
    """Mean chance that the answer is among the k best candidates, ties broken at random.

    scores: (items, candidates). With g candidates scoring above the answer and e others equal to
    it, a random order of the ties puts the answer in the top k with probability
    clip((k - g) / (e + 1), 0, 1); so a method that scores every candidate alike gets chance level.
    """
    # A NaN score (a diverged model) ranks last: NaN compares unequal even to itself, which would
    # otherwise count an answer scored NaN as a sure hit.
    scores = np.asarray(scores, dtype=np.float64)
    scores = np.nan_to_num(scores, nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    ans = np.asarray(answers)
    s_ans = scores[np.arange(len(ans)), ans][:, None]
    greater = (scores > s_ans).sum(1)
    equal = (scores == s_ans).sum(1) - 1
    return float(np.clip((k - greater) / (equal + 1), 0.0, 1.0).mean())
