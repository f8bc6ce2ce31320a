"""`rnnlm-export hub|onnx ckpt_path=<file> out=<path>`: a trained model in a format that leaves rnnlm.

hub: the Hugging Face Hub folder (rnnlm.inference.hub; `repo_id=user/name` uploads it too).
onnx: one step of the model as an ONNX graph (rnnlm.export.onnx), checked against PyTorch once.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from rnnlm.errors import UserError
from rnnlm.inference import hub
from rnnlm.inference.lm import LanguageModel
from rnnlm.inference.translator import Translator, is_translation


def export(cfg: DictConfig) -> dict[str, Any]:
    if cfg.format == "hub" and is_translation(cfg.ckpt_path):
        translator = Translator.load(cfg.ckpt_path)
        folder = translator.save_pretrained(cfg.out)
        print(f"saved {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}", flush=True)
        done: dict[str, Any] = {"out": str(folder)}
        if cfg.repo_id:
            done["url"] = hub.push_folder(folder, cfg.repo_id, private=bool(cfg.private))
            print(f"uploaded to {done['url']}", flush=True)
        return done
    lm = LanguageModel.load(cfg.ckpt_path)
    if cfg.format == "hub":
        folder = lm.save_pretrained(cfg.out)
        print(f"saved {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}", flush=True)
        result: dict[str, Any] = {"out": str(folder)}
        if cfg.repo_id:
            result["url"] = lm.push_to_hub(cfg.repo_id, private=bool(cfg.private))
            print(f"uploaded to {result['url']}", flush=True)
        return result
    if cfg.format != "onnx":
        raise UserError(f"format={cfg.format} is not an export format: rnnlm-export hub|onnx ...")
    from rnnlm.export.onnx import export_onnx

    written = export_onnx(lm, cfg.out, opset=int(cfg.opset))
    what = "any length" if written["time"] == "dynamic" else "one token a call (the step form)"
    print(f"saved {written['path']}: tokens (B, T: {what}), {len(written['states'])} state tensors")
    if cfg.check:
        written["greedy_matches"] = check_greedy(lm, written["path"])
        print("checked: ONNX Runtime's greedy text equals PyTorch's", flush=True)
    return written


def check_greedy(lm: LanguageModel, path: Any, tokens: int = 20) -> bool:
    """The graph generates PyTorch's greedy text; an UserError naming both texts if it does not."""
    from rnnlm.export.onnx_runtime import OnnxLM

    want = lm.generate("", max_new_tokens=tokens, temperature=0)
    got = OnnxLM(path).generate("", max_new_tokens=tokens, temperature=0)
    if got != want:
        raise UserError(
            f"{path}: ONNX Runtime's greedy text {got!r} differs from PyTorch's {want!r}; the graph "
            "was kept for inspection (check=false skips this)"
        )
    return True
