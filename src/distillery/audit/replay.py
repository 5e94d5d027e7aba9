"""Send a traffic file through a gateway over HTTP with the official openai client.

Each request carries its simulated time in the `x-distillery-sim-time` header; a gateway
started with the simulated clock (`serve --simulated-clock`) records it as the usage row's
created_at, any other gateway ignores it. Accounts and keys are provisioned in the gateway's
database (one fresh key per account and replay: the secrets live only in this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from distillery.audit.traffic import Request

log = logging.getLogger(__name__)
SIM_TIME_HEADER = "x-distillery-sim-time"


@dataclass
class ReplayResult:
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> count
    by_account: dict[str, Counter] = field(default_factory=dict)  # account -> status counts

    def first(self, account: str, status: int) -> bool:
        return self.by_account.get(account, Counter())[status] > 0


def provision(database: str | None, accounts: Iterable[str]) -> dict[str, str]:
    """A live key for every account (created when missing): account -> secret."""
    from distillery import store

    engine = store.make_engine(database)
    try:
        have = {a.name for a in store.list_accounts(engine)}
        keys = {}
        for a in sorted(set(accounts)):
            if a not in have:
                store.create_account(engine, a)
            keys[a] = store.create_key(engine, a, name="replay").secret
        return keys
    finally:
        engine.dispose()


async def _send(client, model: str, r: Request) -> int:
    import openai

    p = dict(r.params)
    headers = {SIM_TIME_HEADER: f"{r.t:.3f}"}
    try:
        if r.endpoint == "chat":
            await client.chat.completions.create(model=model, messages=list(r.messages),
                                                 extra_headers=headers, **p)
        else:
            # the completions API takes the number of alternatives as `logprobs`
            top, lp = p.pop("top_logprobs", None), p.pop("logprobs", None)
            if lp:
                p["logprobs"] = top or 0
            await client.completions.create(model=model, prompt=r.prompt,
                                            extra_headers=headers, **p)
        return 200
    except openai.APIStatusError as e:
        return e.status_code
    except openai.APIConnectionError:
        return 0


async def replay_async(requests: list[Request], base_url: str, keys: dict[str, str],
                       model: str | None = None, concurrency: int = 16,
                       every: int | None = None, between: Callable[[], None] | None = None
                       ) -> ReplayResult:
    """Send in time order, at most `concurrency` in flight. With `every` and `between`:
    after each `every` requests, wait for those in flight and call between() (in a thread):
    an audit pass at a deterministic point of the timeline."""
    import openai

    clients: dict[tuple[str, str | None], openai.AsyncOpenAI] = {}

    def client(r: Request) -> openai.AsyncOpenAI:
        k = (r.account, r.user_agent)
        if k not in clients:
            if r.account not in keys:
                raise ValueError(f"no key for account {r.account!r}: provision it first")
            headers = {"User-Agent": r.user_agent} if r.user_agent else None
            clients[k] = openai.AsyncOpenAI(base_url=base_url, api_key=keys[r.account],
                                            max_retries=0, default_headers=headers)
        return clients[k]

    if model is None:
        any_key = next(iter(keys.values()))
        async with openai.AsyncOpenAI(base_url=base_url, api_key=any_key) as c:
            model = (await c.models.list()).data[0].id
    res = ReplayResult()
    sem = asyncio.Semaphore(concurrency)

    async def one(r: Request) -> None:
        async with sem:
            status = await _send(client(r), model, r)
        res.sent += 1
        res.statuses[status] += 1
        res.by_account.setdefault(r.account, Counter())[status] += 1

    try:
        tasks = []
        for i, r in enumerate(sorted(requests, key=lambda q: q.t)):
            if every and between and i and i % every == 0:
                await asyncio.gather(*tasks)
                tasks = []
                await asyncio.to_thread(between)
            await sem.acquire()  # keep time order at the door: at most `concurrency` ahead
            sem.release()
            tasks.append(asyncio.ensure_future(one(r)))
        await asyncio.gather(*tasks)
    finally:
        for c in clients.values():
            with contextlib.suppress(Exception):
                await c.close()
    log.info("replayed %d requests: %s", res.sent, dict(res.statuses))
    return res


def replay(requests: list[Request], base_url: str, keys: dict[str, str],
           model: str | None = None, concurrency: int = 16, every: int | None = None,
           between: Callable[[], None] | None = None) -> ReplayResult:
    return asyncio.run(replay_async(requests, base_url, keys, model, concurrency, every,
                                    between))
