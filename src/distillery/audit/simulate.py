"""Traffic simulator: benign personas (hard negatives included) and extraction attacks.

Benign personas speak from audit/material.py (hand-written); the blatant attacks draw from the
harvester's own pools (harvest/prompts.py, data/seed_tasks.jsonl), as a real attacker using our
harvester would. The careful attacks (`careful*`) copy a benign chat user's behaviour (sessions
that resend their history, a browser client's parameters and user agent, human think times, no
chain-of-thought wording) and keep only what extraction cannot give up: a sweep of a broad task
space (their own hand-written material, audit/material.py CAREFUL_*), for coverage.
Each persona is one small function of (rng, account, start, n) -> requests; `simulate` mixes
instances of them over a time span and returns the traffic and the labels.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from distillery.audit import material as M
from distillery.audit.traffic import Label, Request

DAY = 86_400.0
EPOCH = 1_767_225_600.0  # 2026-01-01 00:00 UTC: the simulated clock's origin
BROWSER_UAS = ["OpenAI/Python 1.99.1", "OpenAI/Python 1.98.0", "OpenAI/NodeJS 4.2.0",
               "curl/8.5.0", "LangChain/0.3"]


def _chat(user: str, system: str | None = None, history: list[dict] | None = None
          ) -> tuple[dict, ...]:
    msgs = [{"role": "system", "content": system}] if system else []
    return tuple([*msgs, *(history or []), {"role": "user", "content": user}])


def _fmt(rng: random.Random, template: str, **pools: list[str]) -> str:
    return template.format(**{k: rng.choice(v) for k, v in pools.items()})


def _session(rng, account, t, ua, first: str, followups: list[str], turns: int, params: dict,
             think: tuple[float, float], system: str | None = None, **pools) -> list[Request]:
    """A multi-turn conversation: each turn resends the history (as chat clients do)."""
    out, history = [], []
    text = first
    for _ in range(turns):
        msgs = _chat(text, system, history)
        out.append(Request(t, account, messages=msgs, params=params, user_agent=ua))
        history = [*history, {"role": "user", "content": text},
                   {"role": "assistant", "content": "(answer)"}]
        t += rng.uniform(*think)
        text = _fmt(rng, rng.choice(followups), **pools)
    return out


def _sessions(make: Callable[[float], list[Request]], rng, start, n, gap) -> list[Request]:
    out, t = [], start
    while len(out) < n:
        out += make(t)
        t = out[-1].t + rng.expovariate(1 / gap)
    return out[:n]


# -- benign -------------------------------------------------------------------------------
def developer(rng, account, start, n):
    ua = rng.choice(BROWSER_UAS)
    params = {"temperature": rng.choice([0.0, 0.2, 0.7])}
    stack = rng.choice(M.DEV_STACKS)
    pools = dict(err=M.DEV_ERRORS, action=M.DEV_ACTIONS, thing=M.DEV_THINGS, code=M.DEV_CODE,
                 stack=[stack])
    return _sessions(lambda t: _session(
        rng, account, t, ua, _fmt(rng, rng.choice(M.DEV_OPENERS), **pools), M.DEV_FOLLOWUPS,
        rng.randint(1, 6), params, (40, 400), **pools), rng, start, n, 3600)


def student(rng, account, start, n):
    ua = rng.choice(BROWSER_UAS)
    subjects = rng.sample(list(M.STUDENT_SUBJECTS), 3)
    qs = [q for s in subjects for q in M.STUDENT_SUBJECTS[s]]
    return _sessions(lambda t: _session(
        rng, account, t, ua, _fmt(rng, rng.choice(M.STUDENT_FRAMES), q=qs), M.STUDENT_FOLLOWUPS,
        rng.randint(1, 3), {}, (30, 200), q=qs), rng, start, n, 7200)


def writer(rng, account, start, n):
    ua = rng.choice(BROWSER_UAS)
    proj = [rng.choice(M.WRITER_PROJECTS)]
    params = {"temperature": 0.9, "max_tokens": rng.choice([800, 1200, 2000])}
    return _sessions(lambda t: _session(
        rng, account, t, ua, _fmt(rng, rng.choice(M.WRITER_ASKS), p=proj), M.WRITER_FOLLOWUPS,
        rng.randint(2, 5), params, (60, 600)), rng, start, n, 5400)


def support_bot(rng, account, start, n, product: str | None = None):
    """One account serving many end users: a fixed system prompt, steady volume."""
    product = product or rng.choice(list(M.SUPPORT_PRODUCTS))
    system = (f"You are the customer support assistant for {product}. Be brief and friendly. "
              "Never discuss other companies' products.")
    qs, ua = M.SUPPORT_PRODUCTS[product], f"{product.split()[0].lower()}-helpdesk/2.3"
    params = {"temperature": 0.3, "max_tokens": 300}
    return _sessions(lambda t: _session(
        rng, account, t, ua, _fmt(rng, rng.choice(M.SUPPORT_STYLES), q=qs), M.SUPPORT_FOLLOWUPS,
        rng.randint(1, 3), params, (15, 90), system), rng, start, n, 40)


def eval_run(rng, account, start, n):
    """A benchmark run: fixed template, temperature 0, logprobs of the answer letter."""
    t, out = start, []
    for _ in range(n):
        opts = rng.sample(M.EVAL_OPTIONS, 4)
        q = _fmt(rng, rng.choice(M.EVAL_STEMS), s=M.EVAL_SUBJECTS, x=M.EVAL_TERMS)
        prompt = q + "\n" + "\n".join(f"{c}. {o}" for c, o in zip("ABCD", opts, strict=True)) \
            + "\nAnswer:"
        out.append(Request(t, account, endpoint="completions", prompt=prompt,
                           params={"max_tokens": 1, "temperature": 0.0, "logprobs": True,
                                   "top_logprobs": 4}, user_agent="lm-eval-harness/0.4"))
        t += rng.uniform(0.8, 1.6)
    return out


def translation(rng, account, start, n):
    lang = rng.choice(M.TRANSLATION_LANGS)
    t, out = start, []
    for _ in range(n):
        text = " ".join(rng.sample(M.TRANSLATION_SENTENCES, rng.randint(1, 3)))
        out.append(Request(t, account, messages=_chat(
            f"Translate the following text from English to {lang}. Reply with the translation "
            f"only.\n\n{text}"), params={"temperature": 0.0, "max_tokens": 400},
            user_agent="localize-pipeline/1.0"))
        t += rng.uniform(2, 6)
    return out


# -- attacks --------------------------------------------------------------------------------
def _pool(kind: str) -> list[tuple[tuple[dict, ...], str]]:
    from distillery.harvest import prompts as P

    seeds = P.seed_prompts()
    base = {"seed": seeds, "taxonomy": P.taxonomy_prompts(),
            "cot": P.cot_prompts(seeds + P.taxonomy_prompts(), one_each=True)}[kind]
    return [(p.messages, p.text) for p in base]


_SELF_INSTRUCT = ["{x}", "Here is a task. {x}", "Task: {x}\nRespond thoroughly.",
                  "{x} Be detailed.", "Instruction: {x}\nOutput:"]


def _sweep(rng, account, start, n, pool, params, gap, ua, endpoint="chat", template=None):
    items = _pool(pool)
    rng.shuffle(items)
    t, out = start, []
    for i in range(n):
        msgs, text = items[i % len(items)]
        if template:
            msgs = _chat(rng.choice(template).format(x=text))
        t += gap * rng.uniform(0.7, 1.3)
        if endpoint == "completions":
            out.append(Request(t, account, endpoint=endpoint, prompt=msgs[-1]["content"],
                               params=params, user_agent=ua))
        else:
            out.append(Request(t, account, messages=msgs, params=params, user_agent=ua))
    return out


def self_instruct(rng, account, start, n):
    return _sweep(rng, account, start, n, "seed", {"max_tokens": 1024, "temperature": 0.7},
                  3.0, "python-httpx/0.27", template=_SELF_INSTRUCT)


def taxonomy_sweep(rng, account, start, n):
    return _sweep(rng, account, start, n, "taxonomy", {"max_tokens": 1024, "temperature": 0.7},
                  2.0, "OpenAI/Python 1.99.1")


def cot_elicitation(rng, account, start, n):
    return _sweep(rng, account, start, n, "cot", {"max_tokens": 2048}, 4.0,
                  "OpenAI/Python 1.99.1")


def logprob_harvest(rng, account, start, n):
    return _sweep(rng, account, start, n, "seed", {"max_tokens": 256, "temperature": 1.0,
                                                   "logprobs": True, "top_logprobs": 20, "n": 4},
                  2.0, "OpenAI/Python 1.99.1", endpoint="completions")


def slow_and_low(rng, account, start, n):
    """Human-like pacing and parameters; only the content (and no conversation) gives it away."""
    items = _pool("cot") + _pool("taxonomy")
    rng.shuffle(items)
    t, out = start, []
    for i in range(n):
        t += rng.expovariate(1 / 1800)
        out.append(Request(t, account, messages=items[i % len(items)][0],
                           params={"temperature": 0.7}, user_agent=rng.choice(BROWSER_UAS)))
    return out


def mixed_product(rng, account, start, n, share: float = 0.3):
    """A real product's support traffic with extraction prompts mixed in at `share`."""
    benign = support_bot(rng, account, start, n)
    attack = _pool("cot") + _pool("seed")
    rng.shuffle(attack)
    out = []
    for i, r in enumerate(benign):
        if rng.random() < share:
            msgs, _ = attack[i % len(attack)]
            r = Request(r.t, account, messages=msgs, params=r.params, user_agent=r.user_agent)
        out.append(r)
    return out


# -- careful attacks: benign behaviour, extraction's coverage ---------------------------------
# the parameter sets of benign chat clients (a client library's default, a temperature knob)
_CAREFUL_PARAMS = [{}, {"temperature": 0.7}, {"temperature": 0.2},
                   {"temperature": 0.9, "max_tokens": 800}]


def _sweep_openers(rng):
    """Endless session openers covering the task space: every topic once per round, in a fresh
    order, each in a randomly chosen human phrasing."""
    topics = [t for ts in M.CAREFUL_TOPICS.values() for t in ts]
    while True:
        rng.shuffle(topics)
        for t in topics:
            yield rng.choice(M.CAREFUL_FRAMES).format(t=t)


def _careful(rng, account, start, n, openers, system=None, gap=1200.0):
    """Sessions of 1-4 turns (history resent), think times 30-300 s, ~`gap` s between them."""
    ua, params = rng.choice(BROWSER_UAS), rng.choice(_CAREFUL_PARAMS)
    return _sessions(lambda t: _session(
        rng, account, t, ua, next(openers), M.CAREFUL_FOLLOWUPS, rng.randint(1, 4), params,
        (30, 300), system), rng, start, n, gap)


def careful(rng, account, start, n):
    """One account that behaves like a curious chat user but sweeps the task space."""
    return _careful(rng, account, start, n, _sweep_openers(rng))


def careful_mixed(rng, account, start, n, share: float = 0.3):
    """A real product's support traffic with careful sessions in `share` of its requests,
    sent by the product's own client (its user agent, parameters and timing) under a generic
    system prompt, so the system-prompt share and the clock are the product's."""
    benign = support_bot(rng, account, start, n)
    sneak = iter(_careful(rng, account, start, n, _sweep_openers(rng), M.CAREFUL_SYSTEM))
    return [Request(r.t, account, messages=next(sneak).messages, params=r.params,
                    user_agent=r.user_agent) if rng.random() < share else r for r in benign]


def careful_campaign(rng, accounts: list[str], start: float, n: int) -> list[Request]:
    """The careful sweep spread over many accounts: one shared sweep (no topic asked twice
    until all are), but each account with its own client, parameters and schedule (starts
    spread over a day, human timing, nothing in lockstep)."""
    openers = _sweep_openers(rng)
    return [r for a in accounts
            for r in _careful(rng, a, start + rng.uniform(0, DAY), n, openers)]


BENIGN: dict[str, Callable] = {"developer": developer, "student": student, "writer": writer,
                               "support_bot": support_bot, "eval_run": eval_run,
                               "translation": translation}
ATTACKS: dict[str, Callable] = {"self_instruct": self_instruct, "taxonomy": taxonomy_sweep,
                                "cot": cot_elicitation, "logprobs": logprob_harvest,
                                "slow_low": slow_and_low, "mixed": mixed_product,
                                "careful": careful, "careful_mixed": careful_mixed}
# accounts x requests per account, at scale 1
DEFAULT_MIX: dict[str, tuple[int, int]] = {
    "developer": (8, 120), "student": (12, 40), "writer": (5, 80), "support_bot": (2, 400),
    "eval_run": (2, 400), "translation": (2, 300),
    "self_instruct": (2, 300), "taxonomy": (2, 300), "cot": (2, 300), "logprobs": (2, 300),
    "slow_low": (2, 150), "mixed": (2, 400), "campaign": (50, 20),
    "careful": (2, 300), "careful_mixed": (2, 400), "careful_campaign": (50, 20)}


# benign only, longer histories: calibration traffic (enough null windows of 200 rows)
CALIBRATION_MIX: dict[str, tuple[int, int]] = {
    "developer": (16, 400), "student": (30, 80), "writer": (10, 300), "support_bot": (6, 1000),
    "eval_run": (6, 800), "translation": (6, 800)}


@dataclass
class SimConfig:
    seed: int = 0
    days: float = 2.0  # accounts start at random times in [0, days)
    scale: float = 1.0  # multiplies requests per account
    mix: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_MIX))
    prefix: str = ""  # prepended to account names (two simulations into one database)

    def __post_init__(self) -> None:
        known = set(BENIGN) | set(ATTACKS) | set(CAMPAIGNS)
        bad = set(self.mix) - known
        if bad:
            raise ValueError(f"unknown personas {sorted(bad)}; valid: {', '.join(sorted(known))}")
        if self.scale <= 0 or self.days <= 0:
            raise ValueError("scale and days must be positive")


def campaign(rng, accounts: list[str], start: float, n: int) -> list[Request]:
    """Many accounts, a few requests each, one template family, one client, in lockstep."""
    items = _pool("taxonomy") + _pool("cot")
    rng.shuffle(items)
    out, k = [], 0
    for j in range(n):
        tick = start + j * 30.0
        for a in accounts:
            msgs, _ = items[k % len(items)]
            k += 1
            out.append(Request(tick + rng.uniform(0, 5), a, messages=msgs,
                               params={"max_tokens": 1024, "temperature": 0.7},
                               user_agent="aiohttp/3.9 harvest-worker"))
    return out


CAMPAIGNS: dict[str, Callable] = {"campaign": campaign, "careful_campaign": careful_campaign}


def _name(config: SimConfig, persona: str, i: int) -> str:
    """An opaque account name: the persona is in the labels only, never in the traffic."""
    h = hashlib.sha256(f"{config.seed}/{persona}/{i}".encode()).hexdigest()[:10]
    return f"{config.prefix}acct-{h}"


def simulate(config: SimConfig) -> tuple[list[Request], list[Label]]:
    """Traffic (sorted by time) and per-account labels."""
    rng = random.Random(config.seed)
    reqs: list[Request] = []
    labels: list[Label] = []
    for persona, (n_acc, n_req) in config.mix.items():
        n = max(1, round(n_req * config.scale))
        if persona in CAMPAIGNS:
            names = [_name(config, persona, i) for i in range(n_acc)]
            reqs += CAMPAIGNS[persona](rng, names, EPOCH + rng.uniform(0, config.days * DAY), n)
            labels += [Label(a, persona, "attack", f"{persona}-{config.seed}") for a in names]
            continue
        role = "benign" if persona in BENIGN else "attack"
        fn = BENIGN.get(persona) or ATTACKS[persona]
        for i in range(n_acc):
            name = _name(config, persona, i)
            reqs += fn(rng, name, EPOCH + rng.uniform(0, config.days * DAY), n)
            labels.append(Label(name, persona, role))
    reqs = sorted((replace(r, t=round(r.t, 3)) for r in reqs), key=lambda r: r.t)  # ms: as written
    return reqs, labels
