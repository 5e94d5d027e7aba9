"""The harvester: prompts -> any OpenAI-compatible chat endpoint -> the append-only dataset.

Concurrency is a pool of workers sharing one HTTP connection pool (aiohttp under the openai
client). Keys rotate: each request
takes the key that is free soonest, where "free" means its client-side rate slot has come and
no 429 has put it on cool-down. Retries: 429 (the key cools for Retry-After, and the request
moves to another key), 5xx, timeouts and connection errors (exponential backoff with jitter,
at least Retry-After when the server sends one). Each answer is written (and fsynced) as it
completes, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai

from distillery.harvest.config import HarvestConfig
from distillery.harvest.dataset import DatasetWriter
from distillery.harvest.prompts import Prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HarvestReport:
    prompts: int            # prompts given
    skipped: int            # already in the dataset (resumed)
    written: int            # new rows
    failed: int             # gave up after retries or a non-retryable error
    prompt_tokens: int
    completion_tokens: int
    cost: float
    retries: int
    rate_limited: int       # 429 answers received
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s else 0.0


def parse_retry_after(headers: httpx.Headers | None) -> float | None:
    """Seconds from Retry-After (delta-seconds or HTTP date) or retry-after-ms; None if absent."""
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class KeyPool:
    """Which key to use next: the one free soonest (rate slot and 429 cool-down)."""

    def __init__(self, n_keys: int, rpm_per_key: float):
        self.interval = 60.0 / rpm_per_key if rpm_per_key else 0.0
        self.next_slot = [0.0] * n_keys
        self.cool_until = [0.0] * n_keys
        self._lock = asyncio.Lock()
        self._turn = 0

    async def acquire(self) -> int:
        async with self._lock:
            now = time.monotonic()
            n = len(self.next_slot)
            order = [(self._turn + j) % n for j in range(n)]  # round robin among ties
            k = min(order, key=lambda i: max(self.next_slot[i], self.cool_until[i]))
            self._turn = (k + 1) % n
            start = max(now, self.next_slot[k], self.cool_until[k])
            self.next_slot[k] = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)
        return k

    def cool(self, k: int, seconds: float) -> None:
        self.cool_until[k] = max(self.cool_until[k], time.monotonic() + seconds)


def logprobs_to_rows(choice) -> list[dict] | None:
    lp = getattr(choice, "logprobs", None)
    content = getattr(lp, "content", None) if lp is not None else None
    if not content:
        return None
    return [{"token": t.token, "logprob": t.logprob,
             "top": [{"token": a.token, "logprob": a.logprob} for a in (t.top_logprobs or [])]}
            for t in content]


@dataclass
class _Stats:
    written: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    rate_limited: int = 0
    errors: list[str] = field(default_factory=list)


class Harvester:
    def __init__(self, cfg: HarvestConfig):
        self.cfg = cfg
        self.keys = KeyPool(len(cfg.api_keys), cfg.rpm_per_key)
        self.want_logprobs = cfg.top_logprobs > 0

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        b = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2**attempt)
        b *= random.uniform(0.5, 1.0)  # jitter: workers that failed together retry apart
        return max(b, retry_after or 0.0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.cfg.price_in_per_m
                + completion_tokens * self.cfg.price_out_per_m) / 1e6

    async def _ask(self, client: openai.AsyncOpenAI, p: Prompt):
        kw = {}
        if self.want_logprobs:
            kw = {"logprobs": True, "top_logprobs": self.cfg.top_logprobs}
        if self.cfg.seed is not None:
            kw["seed"] = self.cfg.seed
        return await client.chat.completions.create(
            model=self.cfg.model, messages=list(p.messages), max_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature, top_p=self.cfg.top_p, **kw)

    async def preflight(self, client: openai.AsyncOpenAI) -> None:
        """One GET /models with a short timeout before any prompt: a dead URL or a refused key
        fails in seconds with its cause, instead of every prompt retrying for minutes. A
        server without /models (404, 405) is fine."""
        where = f"{self.cfg.base_url} (GET /models)"
        try:
            models = await client.with_options(timeout=min(self.cfg.timeout_s, 10.0)
                                               ).models.list()
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            cause = e.__cause__ or e
            raise ConnectionError(f"cannot reach {where}: {type(cause).__name__}: {cause}: is "
                                  "the server running and --base-url right?") from None
        except openai.AuthenticationError as e:
            raise ValueError(f"{where} refused the API key (HTTP 401: {e.message})") from None
        except openai.APIStatusError as e:
            log.info("preflight: %s answered HTTP %d; harvesting anyway", where, e.status_code)
            return
        served = [m.id for m in models.data]
        if served and self.cfg.model not in served:
            log.warning("%s serves %s, not %r", where, ", ".join(served), self.cfg.model)

    async def _one(self, clients: list[openai.AsyncOpenAI], p: Prompt, st: _Stats) -> dict | None:
        cfg = self.cfg
        last = ""
        for attempt in range(cfg.max_retries + 1):
            k = await self.keys.acquire()
            try:
                resp = await self._ask(clients[k], p)
            except openai.RateLimitError as e:
                st.rate_limited += 1
                last = "HTTP 429"
                ra = parse_retry_after(e.response.headers)
                self.keys.cool(k, ra if ra is not None else self._backoff(attempt, None))
            except openai.BadRequestError as e:
                if self.want_logprobs and "logprob" in str(e).lower():
                    log.warning("the endpoint refuses logprobs; harvesting without them")
                    self.want_logprobs = False
                else:
                    st.errors.append(f"{p.hash[:12]}: {e}")
                    return None
            except openai.APIStatusError as e:
                if e.status_code < 500:
                    st.errors.append(f"{p.hash[:12]}: HTTP {e.status_code} {e}")
                    return None
                last = f"HTTP {e.status_code}"
                await asyncio.sleep(self._backoff(attempt, parse_retry_after(e.response.headers)))
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                last = f"{type(e).__name__}: {e.__cause__ or e}"
                await asyncio.sleep(self._backoff(attempt, None))
            else:
                choice = resp.choices[0]
                usage = resp.usage
                pt = usage.prompt_tokens if usage else 0
                ct = usage.completion_tokens if usage else 0
                return {
                    "prompt_hash": p.hash, "prompt": p.text, "messages": list(p.messages),
                    "response": choice.message.content or "",
                    "finish_reason": choice.finish_reason,
                    "logprobs": logprobs_to_rows(choice), "model": resp.model or cfg.model,
                    "endpoint": cfg.base_url, "key_index": k,
                    "usage": {"prompt_tokens": pt, "completion_tokens": ct},
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "strategy": p.strategy, "category": p.category,
                }
            st.retries += 1
        st.errors.append(f"{p.hash[:12]}: gave up after {cfg.max_retries + 1} attempts (last: "
                         f"{last})")
        return None

    async def run(self, prompts: Iterable[Prompt], out: str | Path) -> HarvestReport:
        cfg = self.cfg
        t0 = time.perf_counter()
        prompts = list(prompts)
        st = _Stats()
        with DatasetWriter(out) as writer:
            seen: set[str] = set()
            todo = []
            for p in prompts:
                if p.hash not in writer.done and p.hash not in seen:
                    seen.add(p.hash)
                    todo.append(p)
            skipped = len(prompts) - len(todo)
            if cfg.limit is not None:
                todo = todo[: cfg.limit]
            queue: asyncio.Queue[Prompt] = asyncio.Queue()
            for p in todo:
                queue.put_nowait(p)
            limits = httpx.Limits(max_connections=cfg.concurrency,
                                  max_keepalive_connections=cfg.concurrency)
            # openai's aiohttp transport: half the client CPU per request of its httpx one
            # (benchmarks/harvest_throughput.py), so one process keeps a fast server busy.
            async with openai.DefaultAioHttpClient(limits=limits, timeout=cfg.timeout_s) as http:
                clients = [openai.AsyncOpenAI(base_url=cfg.base_url, api_key=key, max_retries=0,
                                              timeout=cfg.timeout_s, http_client=http)
                           for key in cfg.api_keys]
                if todo:
                    await self.preflight(clients[0])
                bar = None
                if cfg.progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=len(todo), desc="harvest", unit="req", dynamic_ncols=True)

                async def worker() -> None:
                    while True:
                        try:
                            p = queue.get_nowait()
                        except asyncio.QueueEmpty:
                            return
                        row = await self._one(clients, p, st)
                        if row is None:
                            st.failed += 1
                        elif await writer.append_async(row):
                            st.written += 1
                            st.prompt_tokens += row["usage"]["prompt_tokens"]
                            st.completion_tokens += row["usage"]["completion_tokens"]
                        if bar is not None:
                            bar.update(1)
                            cost = self.cost(st.prompt_tokens, st.completion_tokens)
                            bar.set_postfix(tok=st.completion_tokens, retries=st.retries,
                                            cost=f"{cost:.4f}")

                await asyncio.gather(*(worker() for _ in range(min(cfg.concurrency, len(todo)))))
            if bar is not None:
                bar.close()
        for e in st.errors[:5]:
            log.warning("failed: %s", e)
        return HarvestReport(
            prompts=len(prompts), skipped=skipped, written=st.written, failed=st.failed,
            prompt_tokens=st.prompt_tokens, completion_tokens=st.completion_tokens,
            cost=self.cost(st.prompt_tokens, st.completion_tokens), retries=st.retries,
            rate_limited=st.rate_limited, wall_s=time.perf_counter() - t0)


def harvest(prompts: Iterable[Prompt], out: str | Path, cfg: HarvestConfig) -> HarvestReport:
    """Harvest answers to `prompts` into the JSONL dataset `out` (resuming if it exists)."""
    return asyncio.run(Harvester(cfg).run(prompts, out))
