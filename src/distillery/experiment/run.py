"""The closed loop: attack and defence in one run, each stage kept on disk.

    traffic     simulated benign accounts + an extraction (audit/simulate.py), and benign
                calibration traffic of another seed -> the audit's thresholds
    replay      the watermarked teacher behind the real gateway (SQLite, simulated clock),
                the traffic sent over HTTP with the openai client, an audit pass every
                `audit_every` requests: the policy flags, throttles and blocks as it goes
    datasets    what the extraction harvested before its block (the usage store's answers),
                and the counterfactual: everything it asked for (the rest answered by a
                second gateway with the same key ring and no audit)
    students    one student trained on each dataset (LoRA, sequence-level KD)
    evaluation  both against the teacher on seed tasks the extraction never sent (gap closed)
    forensics   both students read fresh, unmarked teacher answers to the extraction's prompts
                (the exact test): detection, attribution among every account of the store
                and the audit's clusters, 100 control keys, the clean base as reference
    report      summary.json (the headline figures) and report.html

A stage whose output file exists is skipped, so a killed run resumes where it stopped (the
replay restarts from scratch: its database is only complete at the end).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from distillery.experiment.config import ExperimentConfig
from distillery.experiment.rows import (
    dedup,
    harvest_row,
    messages,
    prompt_key,
    request_prompt,
    usage_rows,
    write_rows,
)

log = logging.getLogger(__name__)


class Run:
    def __init__(self, cfg: ExperimentConfig, say: Callable[[str], None] = log.info):
        self.cfg, self.say = cfg, say
        self.dir = Path(cfg.run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = self._load("timings.json") or {}
        self._teacher = None

    # -- plumbing ---------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.dir / name

    def _load(self, name: str):
        p = self.path(name)
        return json.loads(p.read_text()) if p.exists() else None

    def _save(self, name: str, obj) -> None:
        tmp = self.path(name + ".tmp")
        tmp.write_text(json.dumps(obj, indent=1, default=str))
        tmp.replace(self.path(name))

    def stage(self, name: str, output: str, fn: Callable[[], None]) -> None:
        if self.path(output).exists():
            self.say(f"[{name}] kept from an earlier run ({output})")
            return
        self.say(f"[{name}] ...")
        t0 = time.perf_counter()
        fn()
        self.timings[name] = round(time.perf_counter() - t0, 1)
        self._save("timings.json", self.timings)
        self.say(f"[{name}] done in {self.timings[name]:.0f} s")

    @property
    def db(self) -> str:
        return f"sqlite:///{self.path('gateway.db')}"

    @property
    def key_file(self) -> Path:
        return self.path("watermark.key")

    def teacher(self):
        """The teacher engine, loaded once and shared by both gateways and local answers."""
        if self._teacher is None:
            from distillery.engine import TorchEngine

            self._teacher = TorchEngine.from_name(self.cfg.teacher,
                                                  max_batch_size=self.cfg.max_batch_size)
        return self._teacher

    def labels(self) -> dict:
        from distillery.audit.traffic import read_labels

        return read_labels(self.path("traffic.jsonl"))

    def attackers(self) -> list[str]:
        return sorted(a for a, lab in self.labels().items() if lab.role == "attack")

    # -- stages -----------------------------------------------------------------------------
    def traffic(self) -> None:
        from distillery.audit.offline import calibrate_traffic
        from distillery.audit.simulate import SimConfig, simulate
        from distillery.audit.traffic import write_traffic

        c = self.cfg
        reqs, labels = simulate(SimConfig(seed=c.seed, days=c.days,
                                          mix={**c.benign, **c.attack}))
        cal, _ = simulate(SimConfig(seed=c.seed + 1000, days=c.days, mix=c.calibration,
                                    prefix="calibration-"))
        calibrate_traffic(cal, c.embedder, c.window_sizes, seed=c.seed).save(
            self.path("calibration.npz"))
        write_traffic(self.path("traffic.jsonl"), reqs, labels)

    def _gateway(self, database: str, simulated_clock: bool):
        from distillery import store
        from distillery.gateway import ServeConfig, start_in_thread

        store.migrate(database)
        c = self.cfg
        scfg = ServeConfig(model=c.teacher, watermark=c.watermark,
                           watermark_key=str(self.key_file), database=database, port=0,
                           simulated_clock=simulated_clock, auth_cache_ttl_s=0.0,
                           generation_cap=c.generation_cap, max_batch_size=c.max_batch_size,
                           usage_interval_s=0.01, log_level="warning")
        return start_in_thread(scfg, engine=self.teacher(), timeout=600)

    def replay(self) -> None:
        from distillery import store
        from distillery.audit import AuditConfig, Auditor, Calibration
        from distillery.audit.replay import provision, replay
        from distillery.audit.traffic import iter_traffic
        from distillery.watermark import KeyRing

        c = self.cfg
        self.path("gateway.db").unlink(missing_ok=True)  # a replay is whole or redone
        if not self.key_file.exists():
            KeyRing.generate(self.key_file)
        reqs = sorted(iter_traffic(self.path("traffic.jsonl")), key=lambda r: r.t)
        server = self._gateway(self.db, simulated_clock=True)
        engine = store.make_engine(self.db)
        try:
            keys = provision(self.db, {r.account for r in reqs})
            auditor = Auditor(engine, Calibration.load(self.path("calibration.npz")),
                              AuditConfig(**c.audit))
            passes: list[dict] = []

            def audit_pass() -> None:
                server.gateway.usage.flush(60)
                i = min((len(passes) + 1) * c.audit_every, len(reqs))
                res = auditor.run()
                passes.append({
                    "requests": i, "t": reqs[i - 1].t,
                    "scores": [{"entity": e.entity, "accounts": list(e.accounts),
                                "p": e.score.p_value, "window": e.score.size}
                               for e in res.scores],
                    "decisions": [{"account": d["account"], "action": d["action"],
                                   "status": d["status_after"], "entity": d["entity"],
                                   "p": d["p_value"]} for d in res.decisions]})
                for d in res.decisions:
                    self.say(f"  audit after {i} requests: {d['action']} {d['account']} "
                             f"({d['entity']}, p={d['p_value']:.2g})")

            rep = replay(reqs, server.base_url + "/v1", keys, concurrency=c.concurrency,
                         every=c.audit_every, between=audit_pass)
            audit_pass()
        finally:
            server.stop()
        statuses = {a.name: a.status for a in store.list_accounts(engine)}
        engine.dispose()
        self._save("passes.json", passes)
        self._save("replay.json", {"sent": rep.sent, "statuses": dict(rep.statuses),
                                   "by_account": {a: dict(v) for a, v in rep.by_account.items()},
                                   "final_status": statuses})

    def _usage(self, database: str, accounts: list[str] | None = None) -> list[dict]:
        from sqlalchemy import select

        from distillery import store
        from distillery.audit.passes import AUDITED_ROUTES
        from distillery.store.models import Account, Usage

        engine = store.make_engine(database)
        q = (select(Account.name, Usage.created_at, Usage.status_code, Usage.prompt,
                    Usage.responses, Usage.prompt_tokens, Usage.completion_tokens, Usage.model,
                    Usage.route)
             .join(Account, Account.id == Usage.account_id)
             .where(Usage.route.in_(AUDITED_ROUTES)).order_by(Usage.created_at, Usage.id))
        if accounts is not None:
            q = q.where(Account.name.in_(accounts))
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        engine.dispose()
        return rows

    def datasets(self) -> None:
        from distillery.audit.replay import provision, replay
        from distillery.audit.traffic import iter_traffic

        attackers = self.attackers()
        got = self._usage(self.db, attackers)
        before = usage_rows(got)
        served = {(r["name"], prompt_key(r["prompt"])) for r in got if r["status_code"] == 200}
        rest = [r for r in iter_traffic(self.path("traffic.jsonl")) if r.account in attackers
                and (r.account, prompt_key(request_prompt(r))) not in served]
        cf_db = f"sqlite:///{self.path('counterfactual.db')}"
        self.path("counterfactual.db").unlink(missing_ok=True)
        extra: list[dict] = []
        if rest:
            server = self._gateway(cf_db, simulated_clock=True)
            try:
                keys = provision(cf_db, attackers)
                replay(rest, server.base_url + "/v1", keys, concurrency=self.cfg.concurrency)
            finally:
                server.stop()
            extra = usage_rows(self._usage(cf_db, attackers))
        write_rows(self.path("harvest-before-block.jsonl"), before)
        write_rows(self.path("harvest-counterfactual.jsonl"), dedup(before + extra))

    def evalset(self) -> None:
        """Seed tasks the extraction never sent, answered by the teacher (no watermark)."""
        from distillery.harvest.prompts import seed_prompts

        sent = {prompt_key(r["prompt"]) for r in self._usage(self.db, self.attackers())}
        pool = [p for p in seed_prompts() if prompt_key(list(p.messages)) not in sent]
        random.Random(self.cfg.seed).shuffle(pool)
        pool = pool[: self.cfg.eval_prompts]
        answers = self._answer([list(p.messages) for p in pool], self.cfg.generation_cap)
        now = datetime.now(UTC)
        write_rows(self.path("evalset.jsonl"), [
            harvest_row(list(p.messages), a, now, self.cfg.teacher, None)
            for p, a in zip(pool, answers, strict=True)])

    def _answer(self, prompts: list[list[dict]], max_tokens: int, seed: int = 0) -> list[str]:
        from distillery.engine import SamplingParams, chat_request

        eng = self.teacher()
        reqs = [chat_request(eng.tokenizer, m, SamplingParams(
            max_tokens=max_tokens, temperature=0.7, top_p=0.95, seed=seed + i))
            for i, m in enumerate(prompts)]
        return [r.choices[0].text for r in eng.generate(reqs)]

    def train(self, which: str) -> None:
        from distillery.distill import TrainConfig, train
        from distillery.harvest import read_rows

        c = self.cfg
        data = self.path(f"harvest-{which}.jsonl")
        n = len(read_rows(data))
        out = self.path(f"student-{which}")
        if n < 2:
            self._save(f"student-{which}.json", {"trained": False, "rows": n})
            return
        steps = max(1, math.ceil(c.epochs * n / c.batch_size))
        res = train(TrainConfig(dataset=str(data), output_dir=str(out), student=c.student,
                                batch_size=c.batch_size, max_steps=steps, max_len=c.max_len,
                                learning_rate=c.learning_rate, warmup_steps=min(10, steps // 5),
                                heldout_fraction=0.0, eval_every=0, save_every=0,
                                num_threads=c.num_threads, seed=c.seed), progress=False)
        self._save(f"student-{which}.json", {"trained": True, "rows": n, "steps": steps,
                                              "student_dir": res.student_dir})

    def evaluate(self) -> None:
        from distillery.distill import EvalConfig, evaluate

        c = self.cfg
        out, ref = {}, None
        for which in ("counterfactual", "before-block"):  # the bigger one first: never empty
            info = self._load(f"student-{which}.json")
            if not info["trained"]:
                out[which] = None
                continue
            ecfg = EvalConfig(dataset=str(self.path("evalset.jsonl")),
                              student=info["student_dir"], teacher=c.teacher,
                              heldout_fraction=1.0, max_examples=c.eval_prompts,
                              max_len=c.max_len + c.generation_cap, rouge=False,
                              num_threads=c.num_threads, seed=c.seed)
            r = evaluate(ecfg, reference=ref)
            ref = ref or r
            out[which] = r.to_dict()
        self._save("evaluation.json", out)

    def fresh_texts(self) -> None:
        """Fresh unmarked teacher answers to the extraction's prompts: reading them, a student
        chooses tokens the key never touched, so every key's test is exact."""
        prompts, seen = [], set()
        for r in self._usage(self.db, self.attackers()):
            m = messages(r["prompt"])
            if m and prompt_key(m) not in seen:
                seen.add(prompt_key(m))
                prompts.append(m)
        random.Random(self.cfg.seed).shuffle(prompts)
        prompts = prompts[: self.cfg.forensics_texts]
        answers = self._answer(prompts, self.cfg.forensics_max_tokens, seed=10_000)
        now = datetime.now(UTC)
        write_rows(self.path("fresh.jsonl"), [harvest_row(m, a, now, self.cfg.teacher, None)
                                               for m, a in zip(prompts, answers, strict=True)])

    def forensics(self, which: str) -> None:
        from distillery.forensics import ForensicsConfig, run_check
        from distillery.forensics.check import write_json

        info = self._load(f"student-{which}.json")
        if not info["trained"]:
            self._save(f"forensics-{which}.json", None)
            return
        c = self.cfg
        v = run_check(ForensicsConfig(
            suspect=info["student_dir"], mode="open", teacher=c.teacher, scheme=c.watermark,
            key_file=str(self.key_file), database=self.db,
            dataset=str(self.path("fresh.jsonl")), unmarked_text=True,
            clusters=self.audit_clusters(),
            controls=c.controls, alpha=c.alpha, max_len=c.max_len + c.forensics_max_tokens,
            statistic=c.forensics_statistic,
            num_threads=c.num_threads, seed=c.seed), progress=False)
        write_json(v, self.path(f"forensics-{which}.json"))

    def audit_clusters(self) -> dict[str, list[str]]:
        """The clusters the audit acted on (its own finding, not the simulator's labels)."""
        out = {}
        for p in self._load("passes.json") or []:
            for d in p["decisions"]:
                if d["entity"].startswith("cluster:"):
                    for s in p["scores"]:
                        if s["entity"] == d["entity"]:
                            out[d["entity"].removeprefix("cluster:")] = sorted(s["accounts"])
        return out

    def all(self) -> dict:
        from distillery.experiment.report import summarise, write_report

        t0 = time.perf_counter()
        self._save("config.json", self.cfg.to_dict())
        self.stage("traffic", "traffic.jsonl", self.traffic)
        self.stage("replay", "replay.json", self.replay)
        self.stage("datasets", "harvest-counterfactual.jsonl", self.datasets)
        self.stage("evalset", "evalset.jsonl", self.evalset)
        for which in ("before-block", "counterfactual"):
            self.stage(f"train {which}", f"student-{which}.json",
                       lambda w=which: self.train(w))
        self.stage("evaluate", "evaluation.json", self.evaluate)
        self.stage("fresh texts", "fresh.jsonl", self.fresh_texts)
        for which in ("before-block", "counterfactual"):
            self.stage(f"forensics {which}", f"forensics-{which}.json",
                       lambda w=which: self.forensics(w))
        summary = summarise(self)
        summary["timings_s"] = {**self.timings, "this_invocation": round(
            time.perf_counter() - t0, 1)}
        self._save("summary.json", summary)
        write_report(self, summary, self.path("report.html"))
        return summary


def run_experiment(cfg: ExperimentConfig, say: Callable[[str], None] = log.info) -> dict:
    return Run(cfg, say).all()


def remove(run_dir: str | Path) -> None:
    """Start afresh: the run directory and everything in it."""
    shutil.rmtree(run_dir, ignore_errors=True)
