"""What prompted generation gives for tasks a decoder-only LM was not trained for (docs/applications.md).

    python scripts/prompted_samples.py --ckpt <file> [--num-samples 3] [--seed 0]

Three prompts written the way one would ask an instruction-tuned model: summarisation, translation
and question answering. Sample i uses seed `--seed + i` (as `src/generate.py num_samples=N seed=S`
does), on the CPU, so the same command prints the same text; nothing is filtered or picked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnnlm.inference.lm import LanguageModel  # noqa: E402

PROMPTS = {
    "summarisation": (
        "If music be the food of love, play on;\n"
        "Give me excess of it, that, surfeiting,\n"
        "The appetite may sicken, and so die.\n"
        "In brief, he says that"
    ),
    "translation": "English: Good morrow, my lord.\nFrench: Bonjour, monseigneur.\nEnglish: I love thee.\nFrench:",
    "question answering": "Question: Who is the Duke of Illyria?\nAnswer:",
}


def main(argv: list[str] | None = None) -> dict[str, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--num-samples", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=30)
    p.add_argument("--temperature", type=float, default=0.8)
    args = p.parse_args(argv)
    lm = LanguageModel.load(args.ckpt, device="cpu")
    out: dict[str, list[str]] = {}
    for task, prompt in PROMPTS.items():
        _, unknown = lm.tokenizer.encode_with_unknowns(prompt)
        print(f"### {task} ({unknown} prompt tokens outside the vocabulary, read as <unk>)\n")
        print("prompt:\n" + "\n".join("    " + line for line in prompt.split("\n")) + "\n")
        out[task] = []
        for i in range(args.num_samples):
            text = lm.generate(
                prompt,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                seed=args.seed + i,
            )
            continuation = text[len(prompt) :]
            out[task].append(continuation)
            print(f"sample {i + 1} (seed {args.seed + i}), continuation:")
            print("\n".join("    " + line for line in continuation.split("\n")) + "\n")
    return out


if __name__ == "__main__":
    main()
