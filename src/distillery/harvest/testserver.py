"""A minimal OpenAI-compatible chat server for tests and benchmarks (not the gateway).

It answers `/v1/chat/completions` from an in-process engine (micro-batched) or from a
deterministic echo function, and injects faults on demand: 429 with Retry-After every k-th
request, 500 every k-th request, a fixed delay. Each request is recorded (time, key, status)
so tests can check what the client did. The real provider side is `distillery serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class Faults:
    rate_limit_every: int = 0     # every k-th request answers 429 (0 = never)
    retry_after_s: float = 1.0
    error_every: int = 0          # every k-th request answers 500
    delay_s: float = 0.0          # added to every answer
    valid_keys: set[str] | None = None


@dataclass
class Record:
    t: float
    key: str
    status: int
    prompt: str


@dataclass
class ServerState:
    faults: Faults = field(default_factory=Faults)
    records: list[Record] = field(default_factory=list)
    n: int = 0


def echo_answer(prompt: str) -> str:
    """Deterministic and learnable: a fixed frame around the prompt's words, reversed."""
    words = prompt.split()[:24]
    return "Sure. " + " ".join(reversed(words)) + " . Done."


def _echo_logprobs(text: str, k: int) -> dict:
    toks = [t + " " for t in text.split()]
    content = []
    for i, t in enumerate(toks):
        top = [{"token": t, "logprob": -0.1, "bytes": list(t.encode())}]
        top += [{"token": f"alt{j} ", "logprob": -3.0 - j, "bytes": None} for j in range(k - 1)]
        content.append({"token": t, "logprob": -0.1 - 0.01 * (i % 3), "bytes": list(t.encode()),
                        "top_logprobs": top[:k]})
    return {"content": content}


def _finite(lp: float) -> float:
    """-inf (outside the top-p nucleus) as OpenAI's stand-in -9999: JSON has no infinity."""
    return max(lp, -9999.0)


class EngineBackend:
    """Micro-batches concurrent requests into one engine.generate call (in a thread)."""

    def __init__(self, engine, max_wait_s: float = 0.02, max_batch: int = 32):
        self.engine = engine
        self.max_wait_s, self.max_batch = max_wait_s, max_batch
        self.queue: asyncio.Queue | None = None

    async def complete(self, messages: list[dict], body: dict) -> tuple[str, str, dict | None,
                                                                        int, int]:
        from distillery.engine import SamplingParams, chat_request

        k = int(body.get("top_logprobs") or 0)
        params = SamplingParams(
            max_tokens=int(body.get("max_tokens") or 256),
            temperature=float(body.get("temperature", 1.0)), top_p=float(body.get("top_p", 1.0)),
            seed=body.get("seed"), logprobs=bool(body.get("logprobs")), top_logprobs=k,
            repetition_penalty=float(body.get("repetition_penalty") or 1.0))  # as the gateway
        req = chat_request(self.engine.tokenizer, messages, params)
        if self.queue is None:
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._loop())
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((req, fut))
        res = await fut
        ch = res.choices[0]
        lp = None
        if ch.logprobs is not None:
            lp = {"content": [
                {"token": t.token, "logprob": _finite(t.logprob), "bytes": list(t.token.encode()),
                 "top_logprobs": [{"token": s, "logprob": _finite(v), "bytes": list(s.encode())}
                                  for _, s, v in t.top]}
                for t in ch.logprobs]}
        return ch.text, ch.finish_reason, lp, res.prompt_tokens, len(ch.token_ids)

    async def _loop(self) -> None:
        while True:
            batch = [await self.queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            try:
                results = await asyncio.to_thread(self.engine.generate, [r for r, _ in batch])
            except Exception as e:  # every waiting request gets the error
                for _, f in batch:
                    f.set_exception(e)
                continue
            for (_, f), res in zip(batch, results, strict=True):
                f.set_result(res)


def make_app(state: ServerState, engine=None, model_name: str = "fake-teacher") -> FastAPI:
    app = FastAPI()
    backend = EngineBackend(engine) if engine is not None else None

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        messages = body["messages"]
        prompt = messages[-1]["content"]
        f = state.faults
        state.n += 1
        n = state.n

        def record(status: int) -> None:
            state.records.append(Record(time.monotonic(), key, status, prompt))

        if f.valid_keys is not None and key not in f.valid_keys:
            record(401)
            return JSONResponse({"error": {"message": "bad key", "type": "invalid_request_error",
                                           "code": "invalid_api_key"}}, status_code=401)
        if f.rate_limit_every and n % f.rate_limit_every == 0:
            record(429)
            return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit"}},
                                status_code=429,
                                headers={"Retry-After": f"{f.retry_after_s:g}"})
        if f.error_every and n % f.error_every == 0:
            record(500)
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}},
                                status_code=500)
        if f.delay_s:
            await asyncio.sleep(f.delay_s)
        k = int(body.get("top_logprobs") or 0)
        if backend is not None:
            text, finish, lp, pt, ct = await backend.complete(messages, body)
        else:
            text, finish = echo_answer(prompt), "stop"
            lp = _echo_logprobs(text, k) if body.get("logprobs") else None
            pt, ct = len(prompt.split()), len(text.split())
        record(200)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", model_name),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish, "logprobs": lp}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, port: int | None = None):
    """Run app with uvicorn on loopback in a thread; yields the base URL (…/v1)."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start in 20 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
