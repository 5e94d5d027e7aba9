"""Gateway overhead against calling the engine in-process, with the fake instant engine.

    .venv/bin/python benchmarks/gateway_overhead.py [--database URL] [--requests 2000]
        [--servers bare,gateway] [--rate 500] [--no-httpx]

Each server runs in its own subprocess (this file with `--serve`), usage logging on:

- `bare`: uvicorn with a raw ASGI app that reads the body and answers a canned
  chat-completion JSON of the same size: the floor any Python HTTP server sets.
- `gateway`: the gateway as `distillery serve --model fake` runs it (the app, auth, rate
  limits, batcher thread, usage rows); `gateway:asyncio:h11` picks uvicorn's loop and HTTP
  parser (A/B of uvloop and httptools), `gateway@DIR` runs the package in DIR/src (A/B of
  two checkouts).
- `fastapi`: the smallest FastAPI app of the same exchange (one route, a pydantic body
  model, a canned answer): what the framework alone costs, between bare and gateway.
- `gateway-redis`: the same with its rate limits in Redis (`--redis URL`), as gateway
  processes that share limits run.
- `gateway-audit`: the gateway with its background auditor on (gateway/auditor.py: an audit
  pass every `--audit-interval` s, hashing embedder, a benign calibration simulated here,
  decisions recorded but not enforced so the benchmark's account keeps being served): what
  the audit costs the requests (`--servers gateway,gateway-audit`). Both gateways write one
  database, so the auditor reads the plain gateway's rows too (twice the work: conservative).

Two clients. `raw`: a blocking socket (sequential) or asyncio streams (concurrent) sending
pre-built HTTP/1.1 keep-alive requests and reading the response by its Content-Length, so
the client costs microseconds. `httpx`: the keep-alive client of the first version of this
benchmark; it costs ~1 ms a request itself, which that version counted as gateway overhead.

The servers are measured in alternating, rotating blocks (bare, gateway, ...; gateway, bare,
...), so that a change in the machine's load hits them alike. Reported, per server:
sequential round trip p50/p99 (one client); requests/s and p50/p99 with 16 concurrent
clients (closed loop: a client sends again when answered, so this is saturation and its
queue); p50/p99 with requests sent at a fixed rate (`--rate`, default 500/s, the goal's load;
open loop); the server's CPU time per request (all its threads: the steadiest figure for an
A/B on a busy machine). And the added latency two ways: over the in-process engine call (the
issue's definition) and over the bare server (what the gateway itself costs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from pydantic import BaseModel

from distillery import store
from distillery.engine import GenerationRequest, SamplingParams
from distillery.gateway.fake import FakeEngine
from distillery.gateway.server import free_port

BODY = {"model": "fake", "messages": [{"role": "user", "content": "what is a fox"}],
        "max_tokens": 8}
BODY_BYTES = json.dumps(BODY).encode()
WARMUP = 200
CLIENTS = 16


def in_process(n: int) -> np.ndarray:
    engine = FakeEngine()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        prompt = engine.tokenizer.apply_chat_template(BODY["messages"])
        engine.generate([GenerationRequest(prompt, SamplingParams(max_tokens=8))])
        out.append(time.perf_counter() - t)
    return np.array(out)


# -- servers (subprocess side) ---------------------------------------------------------------
def _canned() -> bytes:
    """What the gateway answers BODY with (8 fake words), with fixed id and time."""
    text = "the quick brown fox jumps over a lazy "
    return json.dumps({
        "id": "chatcmpl-0123456789abcdef00000000", "object": "chat.completion",
        "created": 1764300000, "model": "fake", "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16}}).encode()


async def bare_app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    body = _CANNED
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_CANNED = _canned()


class _Message(BaseModel):
    role: str
    content: str


class _Chat(BaseModel):
    model: str
    messages: list[_Message]
    max_tokens: int | None = None


def fastapi_app():
    """The smallest FastAPI server of the same exchange: one route, the body validated by a
    pydantic model, a dict returned (no auth, limits, engine, usage rows or metrics)."""
    from fastapi import FastAPI

    app = FastAPI()
    answer = json.loads(_CANNED)

    @app.post("/v1/chat/completions")
    async def chat(body: _Chat) -> dict:
        return answer

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app


def serve(kind: str, port: int, database: str, loop: str, http: str, redis: str,
          audit: tuple[str, str] | None = None) -> None:
    import uvicorn

    if kind in ("bare", "fastapi"):
        import gc

        app = bare_app if kind == "bare" else fastapi_app()
        gc.freeze()  # as the gateway does
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning",
                    access_log=False, loop=loop, http=http, lifespan="on")
        return
    from distillery.gateway import ServeConfig
    from distillery.gateway import serve as run

    cal, conf = audit if kind == "gateway-audit" else (None, None)
    run(ServeConfig(model="fake", watermark="none", database=database, port=port,
                    rpm_limit=10**9, tpm_limit=10**9, max_queue=4096, log_level="warning",
                    loop=loop, http=http, redis_url=redis if kind == "gateway-redis" else None,
                    audit_calibration=cal, audit_config=conf))


def audit_files(interval: float) -> tuple[str, str]:
    """A benign calibration (hashing embedder) and an audit config that records decisions
    without enforcing them, for the gateway-audit server."""
    from distillery.audit.offline import calibrate_traffic
    from distillery.audit.simulate import CALIBRATION_MIX, SimConfig, simulate

    d = Path(tempfile.mkdtemp())
    reqs, _ = simulate(SimConfig(seed=1, mix=CALIBRATION_MIX))
    calibrate_traffic(reqs, "hashing").save(d / "calibration.npz")
    (d / "audit.toml").write_text(f"[audit]\ninterval_s = {interval}\nenforce = false\n")
    return str(d / "calibration.npz"), str(d / "audit.toml")


# -- servers (benchmark side) ----------------------------------------------------------------
class Server:
    """One server subprocess, from a spec `kind[:loop:http][@checkout]`."""

    def __init__(self, spec: str, database: str, key: str, redis: str,
                 audit: tuple[str, str] | None = None):
        self.spec, self.key = spec, key
        spec, _, checkout = spec.partition("@")
        kind, loop, http = (spec.split(":") + ["auto", "auto"])[:3]
        self.kind = kind
        self.port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if checkout:
            env["PYTHONPATH"] = str(Path(checkout) / "src")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port", str(self.port),
             "--database", database, "--loop", loop, "--http", http,
             "--redis", redis, *(["--audit", *audit] if audit else [])],
            env=env, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self.ps = psutil.Process(self.proc.pid)
        self.cpu_s = 0.0  # server CPU time (all threads) in the measured blocks
        for _ in range(600):
            try:
                if httpx.get(self.base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server {self.spec} exited") from None
                time.sleep(0.1)
        else:
            raise RuntimeError(f"server {self.spec} did not start")
        self.request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY_BYTES)}\r\n\r\n").encode() + BODY_BYTES

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def new_key(url: str) -> str:
    name = f"bench-{os.getpid()}-{time.time_ns()}"
    return store.provision(url, [name])[name]


# -- raw client ------------------------------------------------------------------------------
def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            return int(line[15:])
    raise ValueError("response without Content-Length")


class RawConnection:
    """A blocking keep-alive connection: send pre-built bytes, read status line, headers and
    Content-Length bytes of body."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def roundtrip(self, request: bytes) -> int:
        self.sock.sendall(request)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self.buf += self._recv()
        head, need = self.buf[:end], end + 4 + _content_length(self.buf[:end])
        while len(self.buf) < need:
            self.buf += self._recv()
        self.buf = self.buf[need:]
        return int(head[9:12])

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


def raw_sequential(conn: RawConnection, request: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        status = conn.roundtrip(request)
        out.append(time.perf_counter() - t)
        assert status == 200, status
    return out


async def raw_exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       request: bytes) -> None:
    """One request on a keep-alive asyncio connection, its response read to the end."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(_content_length(head))
    assert head[9:12] == b"200", head[:12]


async def raw_concurrent(port: int, request: bytes, n: int, clients: int = CLIENTS
                         ) -> tuple[float, list[float]]:
    lat: list[float] = []
    left = [n]

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0:
                left[0] -= 1
                t = time.perf_counter()
                await raw_exchange(reader, writer, request)
                lat.append(time.perf_counter() - t)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(clients)])
    return time.perf_counter() - t0, lat


async def raw_open_loop(port: int, request: bytes, rate: float, n: int, conns: int = 64
                        ) -> tuple[float, list[float]]:
    """Requests sent at a fixed rate whatever the answers (open loop, as real traffic is),
    over a pool of keep-alive connections; each latency counts from the request's scheduled
    time, so a late client or a full pool counts against the server (no coordinated
    omission). Returns (achieved requests/s, latencies)."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    lat: list[float] = []

    async def one(scheduled: float) -> None:
        reader, writer = await pool.get()
        await raw_exchange(reader, writer, request)
        lat.append(time.perf_counter() - scheduled)
        pool.put_nowait((reader, writer))

    tasks = []
    t0 = time.perf_counter()
    for i in range(n):
        scheduled = t0 + i / rate
        if (delay := scheduled - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    while not pool.empty():
        pool.get_nowait()[1].close()
    return n / wall, lat


# -- httpx client (the first version's) -----------------------------------------------------
def httpx_sequential(c: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = c.post("/v1/chat/completions", json=BODY)
        out.append(time.perf_counter() - t)
        assert r.status_code == 200
    return out


async def httpx_concurrent(base: str, key: str, n: int, clients: int = CLIENTS
                           ) -> tuple[float, list[float]]:
    lat: list[float] = []
    left = [n]

    async def worker(c: httpx.AsyncClient):
        while left[0] > 0:
            left[0] -= 1
            t = time.perf_counter()
            r = await c.post("/v1/chat/completions", json=BODY)
            lat.append(time.perf_counter() - t)
            assert r.status_code == 200

    cs = [httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"})
          for _ in range(clients)]
    t0 = time.perf_counter()
    await asyncio.gather(*[worker(c) for c in cs])
    wall = time.perf_counter() - t0
    for c in cs:
        await c.aclose()
    return wall, lat


# -- report ----------------------------------------------------------------------------------
def ms(x: float) -> float:
    return round(float(x) * 1000, 2)


def summary(seq: list[float], conc_wall: float, conc: list[float]) -> dict:
    return {"p50_ms": ms(np.median(seq)), "p99_ms": ms(np.quantile(seq, .99)),
            "rps_1_client": round(len(seq) / sum(seq), 1),
            f"rps_{CLIENTS}_clients": round(len(conc) / conc_wall, 1),
            f"p50_ms_{CLIENTS}_clients": ms(np.median(conc)),
            f"p99_ms_{CLIENTS}_clients": ms(np.quantile(conc, .99))}


def runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def measure(servers: list[Server], n: int, rounds: int, use_httpx: bool, rate: float
            ) -> dict:
    conns = {s.spec: RawConnection(s.port) for s in servers}
    seq = {s.spec: [] for s in servers}
    conc = {s.spec: [] for s in servers}
    wall = dict.fromkeys(conc, 0.0)
    for s in servers:
        raw_sequential(conns[s.spec], s.request, WARMUP)
    with runner() as r:
        for i in range(rounds):  # alternate (and rotate), so that the load hits all alike
            order = servers[i % len(servers):] + servers[:i % len(servers)]
            for s in order:
                c0 = s.cpu()
                seq[s.spec] += raw_sequential(conns[s.spec], s.request, n // rounds)
                s.cpu_s += s.cpu() - c0
            for s in order:
                c0 = s.cpu()
                w, lat = r.run(raw_concurrent(s.port, s.request, 2 * n // rounds))
                s.cpu_s += s.cpu() - c0
                wall[s.spec] += w
                conc[s.spec] += lat
        at_rate: dict[str, list[float]] = {s.spec: [] for s in servers}
        achieved = dict.fromkeys(at_rate, 0.0)
        for i in range(rounds if rate else 0):
            for s in servers[i % len(servers):] + servers[:i % len(servers)]:
                rps, lat = r.run(raw_open_loop(s.port, s.request, rate, n // rounds))
                achieved[s.spec] += rps / rounds
                at_rate[s.spec] += lat
    for c in conns.values():
        c.close()
    out = {"raw": {s.spec: summary(seq[s.spec], wall[s.spec], conc[s.spec]) for s in servers}}
    for s in servers if rate else []:
        out["raw"][s.spec][f"at_{rate:g}_rps"] = {
            "achieved_rps": round(achieved[s.spec], 1), "p50_ms": ms(np.median(at_rate[s.spec])),
            "p99_ms": ms(np.quantile(at_rate[s.spec], .99))}
    for s in servers:  # (the clock ticks at 10 ms: only the total over all blocks is exact)
        out["raw"][s.spec]["server_cpu_ms_per_request"] = round(
            s.cpu_s * 1000 / (len(seq[s.spec]) + len(conc[s.spec])), 3)
    if use_httpx:
        out["httpx"] = {}
        for s in servers:
            if s.kind == "bare":
                continue
            with httpx.Client(base_url=s.base, headers={"Authorization": f"Bearer {s.key}"}) as c:
                httpx_sequential(c, WARMUP)
                hseq = httpx_sequential(c, n)
            w, hconc = asyncio.run(httpx_concurrent(s.base, s.key, 2 * n))
            out["httpx"][s.spec] = summary(hseq, w, hconc)
    out["seq_samples"] = seq
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", default=None, help="SQLAlchemy URL [default: a new SQLite]")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                    help="the Redis of the gateway-redis server (shared rate limits)")
    ap.add_argument("--requests", type=int, default=2000, help="sequential requests a server")
    ap.add_argument("--rounds", type=int, default=10, help="alternating blocks per server")
    ap.add_argument("--servers", default="bare,gateway",
                    help="comma-separated specs: bare | gateway[:loop:http][@checkout]")
    ap.add_argument("--no-httpx", action="store_true", help="skip the httpx client runs")
    ap.add_argument("--rate", type=float, default=500,
                    help="also send --requests at this fixed rate (open loop); 0: skip")
    ap.add_argument("--audit-interval", type=float, default=1.0,
                    help="gateway-audit: seconds between audit passes")
    ap.add_argument("--serve", choices=["bare", "fastapi", "gateway", "gateway-redis",
                                        "gateway-audit"], help=argparse.SUPPRESS)
    ap.add_argument("--audit", nargs=2, help=argparse.SUPPRESS)  # calibration, config
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--loop", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--http", default="auto", help=argparse.SUPPRESS)
    args = ap.parse_args()
    url = args.database or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    if args.serve:
        serve(args.serve, args.port, url, args.loop, args.http, args.redis, args.audit)
        return
    audit = audit_files(args.audit_interval) if "gateway-audit" in args.servers else None
    inproc = in_process(args.requests)
    key = new_key(url)
    servers: list[Server] = []
    try:
        for spec in args.servers.split(","):
            servers.append(Server(spec, url, key, args.redis, audit))
        res = measure(servers, args.requests, args.rounds, not args.no_httpx, args.rate)
    finally:
        for s in servers:
            s.stop()
    seq = res.pop("seq_samples")
    med = float(np.median(inproc))
    added = {}
    bare = next((s.spec for s in servers if s.kind == "bare"), None)
    for s in servers:
        if s.kind == "bare":
            continue
        a = {"over_in_process_p50_ms": ms(np.median(seq[s.spec]) - med),
             "over_in_process_p99_ms": ms(np.quantile(seq[s.spec], .99) - med)}
        if bare is not None:
            a["over_bare_p50_ms"] = ms(np.median(seq[s.spec]) - np.median(seq[bare]))
            a["over_bare_p99_ms"] = ms(np.quantile(seq[s.spec], .99) - np.quantile(seq[bare], .99))
        if args.rate:
            r = res["raw"][s.spec][f"at_{args.rate:g}_rps"]
            a[f"at_{args.rate:g}_rps_over_in_process_p50_ms"] = round(r["p50_ms"] - ms(med), 2)
            a[f"at_{args.rate:g}_rps_over_in_process_p99_ms"] = round(r["p99_ms"] - ms(med), 2)
        if s.spec in res.get("httpx", {}):
            h = res["httpx"][s.spec]
            a["httpx_over_in_process_p50_ms"] = round(h["p50_ms"] - ms(med), 2)
            a["httpx_over_in_process_p99_ms"] = round(h["p99_ms"] - ms(med), 2)
        added[s.spec] = a
    print(json.dumps({"database": url.split(":")[0], "requests": args.requests,
                      "in_process_p50_ms": ms(med),
                      "in_process_p99_ms": ms(np.quantile(inproc, .99)),
                      **res, "added": added, "load_avg_1m": round(os.getloadavg()[0], 2)},
                     indent=1))


if __name__ == "__main__":
    main()
