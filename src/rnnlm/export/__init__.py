"""Models out of rnnlm: the export command (hub, onnx), the ONNX graph and its runtime.

- `command`: `rnnlm-export hub|onnx ckpt_path=... out=...`.
- `onnx`: `export_onnx(lm, path)`, one step of a recurrent model with its state as input and output.
- `onnx_runtime`: `OnnxLM`, generation from the .onnx file alone in ONNX Runtime.
- The Hub format itself lives in rnnlm.inference.hub (LanguageModel.save_pretrained / from_pretrained).
"""
