"""rnnlm-serve on localhost, through a real HTTP client: streamed generation equals LanguageModel's,
8 streams at once, a bounded queue (503 beyond it) and a one-line 4xx for a bad request."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import REPO_ROOT
from rnnlm import LanguageModel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(ckpt: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "src/serve.py", f"ckpt_path={ckpt}", f"port={port}", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start in 120 s")


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[str]:
    proc, url = _start(tiny_checkpoint, "workers=8", "queue_size=8", "max_new_tokens_cap=200")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _events(body: str) -> list[tuple[str, dict]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines.get("event", "message"), json.loads(lines["data"])))
    return out


def test_eight_concurrent_streams_each_equal_the_library(
    server: str, tiny_checkpoint: Path
) -> None:
    lm = LanguageModel.load(tiny_checkpoint)
    want = {seed: lm.generate("the ", 40, temperature=0.9, seed=seed) for seed in range(8)}

    async def one(client: httpx.AsyncClient, seed: int) -> list[tuple[str, dict]]:
        body = {"prompt": "the ", "max_new_tokens": 40, "temperature": 0.9, "seed": seed}
        async with client.stream("POST", f"{server}/generate", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            return _events("".join([chunk async for chunk in response.aiter_text()]))

    async def all_of_them() -> list:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(one(client, seed) for seed in range(8)))

    for seed, events in enumerate(asyncio.run(all_of_them())):
        pieces = [data["text"] for name, data in events if name == "message"]
        assert events[-1][0] == "done"
        assert events[-1][1]["text"] == want[seed] == "the " + "".join(pieces)


def test_plain_json_generation_and_scoring(server: str, tiny_checkpoint: Path) -> None:
    lm = LanguageModel.load(tiny_checkpoint)
    body = {"prompt": "a", "max_new_tokens": 10, "temperature": 0, "stream": False}
    got = httpx.post(f"{server}/generate", json=body, timeout=60).json()
    assert got["text"] == lm.generate("a", 10, temperature=0)
    scored = httpx.post(f"{server}/score", json={"text": "the king"}, timeout=60).json()
    assert scored["perplexity"] == pytest.approx(lm.score("the king").perplexity, rel=1e-6)


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("generate", {"prompt": "a", "temprature": 0.5}, "unknown field 'temprature'"),
        (
            "generate",
            {"temperature": -1},
            "temperature: Input should be greater than or equal to 0",
        ),
        ("generate", {"max_new_tokens": 201}, "over this server's cap of 200"),
        ("generate", {"top_p": 1.5}, "top_p"),
        ("score", {"text": "a"}, "at least two tokens"),
        ("score", {}, "text: Field required"),
    ],
)
def test_a_bad_request_gets_422_and_one_line(
    server: str, path: str, body: dict, words: str
) -> None:
    response = httpx.post(f"{server}/{path}", json=body, timeout=60)
    assert response.status_code == 422
    error = response.json()["error"]
    assert words in error and "\n" not in error


def test_the_queue_is_bounded(tiny_checkpoint: Path) -> None:
    proc, url = _start(tiny_checkpoint, "workers=1", "queue_size=1", "max_new_tokens_cap=100000")
    try:

        async def scenario() -> int:
            long = {"prompt": "a", "max_new_tokens": 100000, "temperature": 1.0}
            async with (
                httpx.AsyncClient(timeout=60) as c1,
                httpx.AsyncClient(timeout=60) as c2,
                c1.stream("POST", f"{url}/generate", json=long) as first,
            ):
                chunks = first.aiter_text()  # held: a dropped iterator closes the stream
                await anext(chunks)  # the first one runs
                second = asyncio.create_task(c2.post(f"{url}/generate", json=long))
                for _ in range(600):  # until the second one waits for the worker
                    if (await c2.get(f"{url}/health")).json()["waiting"] == 1:
                        break
                    await asyncio.sleep(0.05)
                third = await c2.post(f"{url}/generate", json={"max_new_tokens": 1})
                second.cancel()
                assert "busy" in third.json()["error"]
                return third.status_code

        assert asyncio.run(scenario()) == 503
        for _ in range(100):  # the slots are given back when clients leave
            health = httpx.get(f"{url}/health", timeout=10).json()
            if health["running"] == 0 and health["waiting"] == 0:
                break
            time.sleep(0.1)
        assert (health["running"], health["waiting"]) == (0, 0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
