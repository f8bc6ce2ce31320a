"""Reproduce the figures of docs/applications.md from a checkpoint.

    python scripts/applications.py --ckpt outputs/train/runs/<run>/checkpoints/best.ckpt \
        --json docs/applications.json

Both tasks are built from the held-out split (`--split`, default test) of the corpus the
checkpoint was trained on (the bundled plays, or its data.path), deterministically for `--seed`:

- next-passage retrieval, for paragraphs and for lines: given passage i, find passage i + 1 among
  100 candidates. Scored by cosine similarity of the model's embeddings (each pooling), the same
  for an untrained model of the same shape, BM25, the model's own likelihood (log p(next | passage)
  - log p(next), i.e. pointwise mutual information), and chance.
- cloze: the last word of a line against 4 frequency-matched distractors, scored by the model's
  log-probability, a unigram baseline (most frequent word) and chance.

Prints Markdown tables and, with --json, writes every figure and the settings to a file.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnnlm.applications.embedding import embed  # noqa: E402
from rnnlm.applications.lexical import BM25, reciprocal_rank_fusion  # noqa: E402
from rnnlm.applications.passages import split_passages  # noqa: E402
from rnnlm.applications.rank import rank_continuations  # noqa: E402
from rnnlm.applications.tasks import (  # noqa: E402
    build_cloze_task,
    build_retrieval_task,
    topk_accuracy,
    unigram_choice,
    word_counts,
)
from rnnlm.data.sources import load_corpus  # noqa: E402
from rnnlm.inference.device import resolve_device  # noqa: E402
from rnnlm.inference.lm import LanguageModel  # noqa: E402

BAND = 50  # build_cloze_task's default window: distractors come from 50 ranks around the answer
SEPARATOR = {"line": "\n", "paragraph": "\n\n"}  # what lies between a passage and the next one


def untrained_copy(lm: LanguageModel, seed: int) -> LanguageModel:
    """The same architecture and vocabulary with freshly initialised weights: a control.

    The weights are drawn on the CPU, so the control is the same whatever device runs the rest.
    """
    model = copy.deepcopy(lm.model).cpu()
    torch.manual_seed(seed)
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    if hasattr(model, "reset_parameters"):
        model.reset_parameters()
    return LanguageModel(model.to(lm.device).eval(), lm.tokenizer)


def pmi_scores(lm: LanguageModel, passages: list[str], items, sep: str) -> np.ndarray:  # noqa: ANN001
    """log p(candidate | query + separator) - log p(candidate | start of a line), per item."""
    needed = sorted({c for it in items for c in it.candidates})
    prior = {}
    for start in range(0, len(needed), 256):
        chunk = needed[start : start + 256]
        rows = rank_continuations(lm, "", [passages[j] for j in chunk])
        by_text = {}
        for r in rows:
            by_text.setdefault(r.candidate, r.logprob)
        prior.update({j: by_text[passages[j]] for j in chunk})
    out = np.empty((len(items), len(items[0].candidates)))
    for i, it in enumerate(items):
        texts = [passages[j] for j in it.candidates]
        rows = rank_continuations(lm, passages[it.query] + sep, texts)
        by_text = {}
        for r in rows:
            by_text.setdefault(r.candidate, r.logprob)
        out[i] = [by_text[passages[j]] - prior[j] for j in it.candidates]
    return out


def retrieval(lm: LanguageModel, text: str, mode: str, args: argparse.Namespace) -> dict:
    passages = [p for _, p in split_passages(text, mode)]
    items = build_retrieval_task(passages, args.queries, args.candidates, args.seed)
    answers = [it.answer for it in items]
    q_idx = np.array([it.query for it in items])
    c_idx = np.array([it.candidates for it in items])  # (Q, C)

    def accuracy(scores: np.ndarray, seconds: float) -> dict:
        return {
            "top1": topk_accuracy(scores, answers, 1),
            "top5": topk_accuracy(scores, answers, 5),
            "seconds": round(seconds, 2),
        }

    def cosine(emb: torch.Tensor) -> np.ndarray:
        e = emb.numpy().astype(np.float64)
        return np.einsum("qh,qch->qc", e[q_idx], e[c_idx])

    rows: dict[str, dict] = {}
    mean_cosine = None
    for pooling in ("mean", "last", "max"):
        t0 = time.perf_counter()
        emb = embed(lm, passages, pooling=pooling)
        rows[f"embeddings, {pooling} pooling"] = accuracy(cosine(emb), time.perf_counter() - t0)
        if pooling == "mean":
            mean_cosine = cosine(emb)
            centred = torch.nn.functional.normalize(emb - emb.mean(0, keepdim=True), dim=-1)
            rows["embeddings, mean pooling, centred"] = accuracy(
                cosine(centred), time.perf_counter() - t0
            )
    t0 = time.perf_counter()
    emb = embed(untrained_copy(lm, args.seed), passages, pooling="mean")
    rows["untrained model, mean pooling"] = accuracy(cosine(emb), time.perf_counter() - t0)
    t0 = time.perf_counter()
    bm25 = BM25(passages)
    scores = np.array([bm25.scores(passages[it.query])[list(it.candidates)] for it in items])
    rows["BM25"] = accuracy(scores, time.perf_counter() - t0)
    # hybrid: the two rankings of each query's candidates fused (search.py method=hybrid)
    fused = np.array(
        [reciprocal_rank_fusion(e, b) for e, b in zip(mean_cosine, scores, strict=True)]
    )
    rows["hybrid: BM25 + embeddings (mean), reciprocal rank fusion"] = accuracy(fused, 0.0)
    if not args.no_lm_scoring:
        t0 = time.perf_counter()
        scores = pmi_scores(lm, passages, items, SEPARATOR[mode])
        rows["model likelihood (PMI)"] = accuracy(scores, time.perf_counter() - t0)
    rows["chance"] = {"top1": 1 / args.candidates, "top5": 5 / args.candidates, "seconds": 0.0}
    return {
        "passages": len(passages),
        "queries": len(items),
        "candidates": args.candidates,
        "methods": rows,
    }


def cloze(lm: LanguageModel, heldout: str, train: str, args: argparse.Namespace) -> dict:
    counts = word_counts(train)
    items = build_cloze_task(heldout, counts, args.cloze_items, num_distractors=4, seed=args.seed)
    answers = np.array([it.answer for it in items])
    t0 = time.perf_counter()
    total = np.empty((len(items), 5))
    mean = np.empty((len(items), 5))
    for i, it in enumerate(items):
        by_text = {r.candidate: r for r in rank_continuations(lm, it.context, list(it.candidates))}
        total[i] = [by_text[c].logprob for c in it.candidates]
        mean[i] = [by_text[c].mean_logprob for c in it.candidates]
    seconds = time.perf_counter() - t0
    unigram = np.array([unigram_choice(it, counts) for it in items])
    # The most frequent words have no band above them, so the answer tends to be the most frequent
    # candidate and the unigram baseline beats chance there; the other items are fully matched.
    top = {w for w, _ in counts.most_common(BAND)}
    rare = np.array([it.candidates[it.answer] not in top for it in items])
    examples = []
    for it, row in list(zip(items, total, strict=True))[:5]:
        examples.append(
            {
                "line": it.line,
                "context": it.context[-120:],
                "candidates": list(it.candidates),
                "answer": it.candidates[it.answer],
                "model": it.candidates[int(np.argmax(row))],
            }
        )
    return {
        "items": len(items),
        "methods": {
            "model, total log-probability": {
                "accuracy": topk_accuracy(total, answers, 1),
                "seconds": round(seconds, 2),
            },
            "model, per-token log-probability": {"accuracy": topk_accuracy(mean, answers, 1)},
            "unigram (most frequent in training)": {"accuracy": float((unigram == answers).mean())},
            "chance": {"accuracy": 0.2},
        },
        "answers_outside_top_words": {
            "top_words": BAND,
            "items": int(rare.sum()),
            "model, total log-probability": topk_accuracy(total[rare], answers[rare], 1),
            "unigram (most frequent in training)": float((unigram == answers)[rare].mean()),
        },
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a .ckpt written by src/train.py")
    p.add_argument("--split", default="test", help="held-out split the tasks come from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queries", type=int, default=500, help="retrieval queries per passage kind")
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--cloze-items", type=int, default=1000)
    p.add_argument("--modes", default="paragraph,line", help="passage kinds for retrieval")
    p.add_argument("--no-lm-scoring", action="store_true", help="skip the likelihood retrieval row")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)

    torch.set_grad_enabled(False)
    lm = LanguageModel.load(args.ckpt, device=resolve_device(args.device))
    data = dict(lm.config.get("data") or {})
    corpus = load_corpus(data.get("path"))
    heldout, train = corpus.read(args.split), corpus.read("train")
    t0 = time.perf_counter()
    results = {
        "ckpt": str(Path(args.ckpt).resolve()),
        "model": {k: v for k, v in (lm.config.get("model") or {}).items() if k != "_target_"},
        "tokenizer": lm.tokenizer.kind,
        "vocab_size": lm.tokenizer.vocab_size,
        "corpus": f"{corpus.name}, {args.split} split",
        "seed": args.seed,
        "device": str(lm.device),
        "retrieval": {m: retrieval(lm, heldout, m, args) for m in args.modes.split(",")},
        "cloze": cloze(lm, heldout, train, args),
    }
    results["seconds"] = round(time.perf_counter() - t0, 1)
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


def markdown(r: dict) -> str:
    out = [f"checkpoint: {r['ckpt']} ({r['tokenizer']} level, {r['corpus']}, seed {r['seed']})", ""]
    for mode, res in r["retrieval"].items():
        out += [
            f"Next-{mode} retrieval: {res['queries']} queries, {res['candidates']} candidates each, "
            f"{res['passages']} {mode}s",
            "",
            "| method | top-1 | top-5 |",
            "|---|---:|---:|",
        ]
        for name, m in res["methods"].items():
            out.append(f"| {name} | {m['top1']:.1%} | {m['top5']:.1%} |")
        out.append("")
    c = r["cloze"]
    out += [
        f"Cloze: {c['items']} lines, 5 candidates each",
        "",
        "| method | accuracy |",
        "|---|---:|",
    ]
    out += [f"| {name} | {m['accuracy']:.1%} |" for name, m in c["methods"].items()]
    sub = c["answers_outside_top_words"]
    out += [
        "",
        f"Items whose answer is not among the {sub['top_words']} most frequent training words "
        f"({sub['items']} items): model {sub['model, total log-probability']:.1%}, unigram "
        f"{sub['unigram (most frequent in training)']:.1%}.",
    ]
    out += ["", "First cloze items (model's choice by total log-probability):"]
    for e in c["examples"]:
        ctx = e["context"].replace("\n", " / ")
        out.append(
            f"- line {e['line']}: ...{ctx} ___ | {e['candidates']} | answer {e['answer']!r}, "
            f"model {e['model']!r}"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
