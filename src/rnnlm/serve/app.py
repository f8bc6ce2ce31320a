"""The HTTP API of `rnnlm-serve` (FastAPI): generation streamed as server-sent events, and scoring.

    POST /generate  {"prompt": "ROMEO:", "max_new_tokens": 50, "temperature": 0.8, "top_k": null,
                     "top_p": null, "seed": null, "stream": true}
                    stream: events `data: {"text": "<piece>"}`, then `event: done` with the whole text;
                    stream false: {"text": ...}
    POST /score     {"text": "..."} -> {"tokens", "logprobs", "perplexity", "unknown"}
    GET  /health    {"status": "ok", "running": n, "waiting": m, ...}

A request with an unknown field, a value out of range or more than `max_new_tokens_cap` new tokens
gets 422 and {"error": "<one line>"}. At most `workers` requests run at once and `queue_size` wait;
one more gets 503 at once (a bounded queue: a burst cannot pile up unbounded work).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = ""
    max_new_tokens: int = Field(100, ge=0)
    temperature: float = Field(1.0, ge=0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stream: bool = True


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)


class Busy(Exception):
    """Every worker is busy and the queue is full."""


class Admission:
    """`workers` requests at once, `queue_size` more waiting, the rest refused (503)."""

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers, self.queue_size = workers, queue_size
        self.slots = asyncio.Semaphore(workers)
        self.running = self.waiting = 0

    async def enter(self) -> None:
        if self.running + self.waiting >= self.workers + self.queue_size:
            raise Busy
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def leave(self) -> None:
        self.running -= 1
        self.slots.release()


def _event(data: dict[str, Any], name: str | None = None) -> str:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _one_line(err: RequestValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    if first.get("type") == "extra_forbidden":
        return f"unknown field {where!r}: the fields are those of the API's docs (GET /docs)"
    return f"{where}: {first.get('msg')}"


def build_app(
    lm: Any, max_new_tokens_cap: int = 1000, workers: int = 2, queue_size: int = 8
) -> FastAPI:
    """The API around `lm` (a rnnlm LanguageModel)."""
    app = FastAPI(
        title="rnnlm", description="Generation and scoring with a recurrent language model"
    )
    admission = Admission(workers, queue_size)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _one_line(err)}, status_code=422)

    @app.exception_handler(Busy)
    async def busy(_: Request, __: Busy) -> JSONResponse:
        return JSONResponse(
            {
                "error": f"busy: {admission.running} running and {admission.waiting} waiting; retry later"
            },
            status_code=503,
            headers={"Retry-After": "1"},
        )

    def refuse(message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=422)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "running": admission.running,
            "waiting": admission.waiting,
            "workers": workers,
            "queue_size": queue_size,
            "max_new_tokens_cap": max_new_tokens_cap,
            "tokenizer": lm.tokenizer.kind,
            "vocab_size": lm.tokenizer.vocab_size,
        }

    @app.post("/generate", response_model=None)
    async def generate(req: GenerateRequest) -> Any:
        if req.max_new_tokens > max_new_tokens_cap:
            return refuse(
                f"max_new_tokens: {req.max_new_tokens} is over this server's cap of "
                f"{max_new_tokens_cap} (rnnlm-serve max_new_tokens_cap=...)"
            )
        args = req.model_dump(exclude={"stream"})
        try:
            pieces: Iterator[str] = lm.stream(**args)  # checks the arguments now
        except ValueError as err:
            return refuse(str(err))
        await admission.enter()
        if not req.stream:
            try:
                return {"text": req.prompt + "".join(await run_in_threadpool(list, pieces))}
            finally:
                admission.leave()

        held = [True]

        def release() -> None:  # once: at the stream's end, or after a client that left early
            if held[0]:
                held[0] = False
                admission.leave()

        async def events() -> AsyncIterator[str]:
            text = []
            try:
                async for piece in iterate_in_threadpool(pieces):
                    text.append(piece)
                    yield _event({"text": piece})
                yield _event({"text": req.prompt + "".join(text)}, "done")
            finally:
                release()

        return StreamingResponse(
            events(), media_type="text/event-stream", background=BackgroundTask(release)
        )

    @app.post("/score", response_model=None)
    async def score(req: ScoreRequest) -> Any:
        await admission.enter()
        try:
            result = await run_in_threadpool(lm.score, req.text)
        except ValueError as err:
            return refuse(str(err))
        finally:
            admission.leave()
        return {
            "tokens": result.tokens,
            "logprobs": result.logprobs,
            "perplexity": result.perplexity,
            "unknown": result.unknown,
        }

    return app
