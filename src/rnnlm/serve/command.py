"""`rnnlm-serve ckpt_path=<file>`: load the model, then serve rnnlm.serve.app with uvicorn."""

from __future__ import annotations

from omegaconf import DictConfig

from rnnlm.errors import UserError

EXTRA = "pip install 'rnnlm[serve]'"


def serve(cfg: DictConfig) -> None:
    try:
        import uvicorn

        from rnnlm.serve.app import build_app
    except ImportError as err:
        raise UserError(f"rnnlm-serve needs {err.name}: {EXTRA}") from None
    from rnnlm.inference.device import resolve_device
    from rnnlm.inference.lm import LanguageModel

    lm = LanguageModel.load(cfg.ckpt_path, device=resolve_device(cfg.device))
    app = build_app(lm, int(cfg.max_new_tokens_cap), int(cfg.workers), int(cfg.queue_size))
    print(
        f"serving {cfg.ckpt_path} on http://{cfg.host}:{cfg.port} "
        "(POST /generate, POST /score, GET /health, GET /docs)",
        flush=True,
    )
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_level="warning")
