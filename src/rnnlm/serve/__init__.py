"""`rnnlm-serve`: generation (server-sent events) and scoring over HTTP.

- `app`: the FastAPI app around a LanguageModel (`build_app`), its request models and bounded queue.
- `command`: the Hydra task that loads a checkpoint and runs uvicorn.
"""
