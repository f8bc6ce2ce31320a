"""The figures of docs/how-it-works.md, written as small PNGs to docs/img/.

    python scripts/figures.py --run outputs/train/runs/<run> --ckpt <run>/checkpoints/best.ckpt

- learning_curve.png: train/loss and val/loss of a real run, read from its TensorBoard events
  with tensorboard's EventAccumulator (needs --run).
- sampling.png: one next-token distribution of a checkpoint under temperature, top-k and top-p,
  computed with rnnlm.inference.sampling.filter_logits, the code generation uses (needs --ckpt).
- tbptt.png: the data layout and truncated backpropagation through time (no input needed).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnnlm.inference.lm import LanguageModel  # noqa: E402
from rnnlm.inference.sampling import filter_logits  # noqa: E402

DPI = 100


def learning_curve(run: Path, out: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folders = sorted({p.parent for p in run.glob("tensorboard/**/events.out.tfevents.*")})
    if not folders:
        raise SystemExit(f"no TensorBoard events under {run}/tensorboard")
    acc = EventAccumulator(str(folders[0]), size_guidance={"scalars": 0})
    acc.Reload()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for tag, style in (("train/loss", dict(lw=1, alpha=0.8)), ("val/loss", dict(marker="o"))):
        events = acc.Scalars(tag)
        ax.plot([e.step for e in events], [e.value for e in events], label=tag, **style)
    if "epoch" in acc.Tags()["scalars"]:
        epochs = acc.Scalars("epoch")
        for prev, cur in zip(epochs, epochs[1:], strict=False):
            if int(cur.value) > int(prev.value):
                ax.axvline(cur.step, color="grey", lw=0.5, ls=":")
    best = min(e.value for e in acc.Scalars("val/loss"))
    ax.set_xlabel("optimiser step (dotted lines: epochs)")
    ax.set_ylabel("cross-entropy (nats per token)")
    right = ax.secondary_yaxis("right", functions=(lambda x: x, lambda x: x))
    ticks = [math.log(p) for p in (100, 150, 250, 400, 700) if 4.3 < math.log(p) < 7]
    right.set_yticks(ticks, [f"{math.exp(t):.0f}" for t in ticks])
    right.set_ylabel("perplexity")
    ax.set_title(f"{run.name}: best val loss {best:.3f} (perplexity {math.exp(best):.1f})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=DPI)
    plt.close(fig)


def sampling(ckpt: Path, prompt: str, out: Path, show: int = 15) -> None:
    lm = LanguageModel.load(ckpt)
    ids, _ = lm.encode_text(prompt)
    with torch.no_grad():
        logits, _ = lm.model(torch.tensor([[lm.start_id, *ids]]))
    logits = logits[0, -1].float()
    order = logits.argsort(descending=True)[:show]
    labels = [lm.tokenizer.itos[i] for i in order.tolist()]
    settings = [
        ("temperature 1 (the model)", 1.0, None, None),
        ("temperature 0.5", 0.5, None, None),
        ("temperature 2", 2.0, None, None),
        ("top-k = 5", 1.0, 5, None),
        ("top-p = 0.5", 1.0, None, 0.5),
    ]
    fig, axes = plt.subplots(1, len(settings), figsize=(15, 3.6), sharey=True)
    for ax, (title, t, k, p) in zip(axes, settings, strict=True):
        probs = filter_logits(logits / t, k, p).softmax(-1)
        shown = probs[order]
        ax.barh(range(show), shown.numpy())
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"p (shown: {float(shown.sum()):.0%} of the mass)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(show), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"next word after {prompt!r}: the {show} most likely under the model", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "sampling.png", dpi=DPI)
    plt.close(fig)


def tbptt(out: Path) -> None:
    """One column of the stream read in windows of T = 4: the state flows on, gradients stop."""
    fig, ax = plt.subplots(figsize=(9, 2.4))
    tokens = ["To", "be", ",", "or", "not", "to", "be", ":", "that", "is", "the", "question"]
    T = 4
    for i, tok in enumerate(tokens):
        w = i // T
        ax.add_patch(plt.Rectangle((i, 0), 0.9, 0.6, color=f"C{w}", alpha=0.25, ec=f"C{w}", lw=1))
        ax.text(i + 0.45, 0.3, tok, ha="center", va="center", fontsize=9)
        ax.add_patch(plt.Rectangle((i, 1.0), 0.9, 0.5, color="grey", alpha=0.15))
        ax.text(i + 0.45, 1.25, f"h{i + 1}", ha="center", va="center", fontsize=8)
        ax.annotate("", (i + 0.45, 1.0), (i + 0.45, 0.6), arrowprops=dict(arrowstyle="->", lw=0.8))
        if i + 1 < len(tokens):
            carried = (i + 1) % T == 0
            ax.annotate(
                "",
                (i + 1.0, 1.25),
                (i + 0.9, 1.25),
                arrowprops=dict(arrowstyle="->", lw=1.5, color="C3" if carried else "black"),
            )
    for w in range(math.ceil(len(tokens) / T)):
        ax.text(w * T + T / 2 - 0.05, -0.35, f"window {w + 1}", ha="center", fontsize=9)
    ax.text(
        len(tokens) / 2,
        1.9,
        "red arrows: the state is carried into the next window (its value), "
        "but detached: gradients stop there",
        ha="center",
        fontsize=9,
        color="C3",
    )
    ax.set_xlim(-0.2, len(tokens) + 0.1)
    ax.set_ylim(-0.6, 2.2)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "tbptt.png", dpi=DPI)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", type=Path, help="a run folder of src/train.py (with tensorboard/)")
    p.add_argument("--ckpt", type=Path, help="a checkpoint, for the sampling figure")
    p.add_argument("--prompt", default="If music be the food of love, play")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tbptt(args.out)
    if args.run:
        learning_curve(args.run, args.out)
    if args.ckpt:
        sampling(args.ckpt, args.prompt, args.out)
    print("written:", *sorted(str(f) for f in args.out.glob("*.png")), sep="\n  ")


if __name__ == "__main__":
    main()
