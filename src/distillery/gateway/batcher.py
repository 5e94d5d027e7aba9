"""Dynamic batching: concurrent requests share the engine's batches.

The event loop submits a Job (one or more GenerationRequests) to a bounded queue; a full
queue raises QueueFull (the API answers 503) instead of growing without limit. One worker
thread takes whatever jobs are waiting, up to `max_batch` requests, runs them in one
blocking `engine.generate` call, and hands each delta and each result back to the job's
event loop with `loop.call_soon_threadsafe`.

A job whose client went away is cancelled (`Job.cancel`, on the event loop): if it still
waits in the queue it never reaches the engine; if it runs and the engine is `cancellable`
(its generate takes `is_cancelled=`), the engine stops decoding it at the next step, so its
batch slot goes to others. An engine that cannot cancel decodes it to the end, unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from distillery.engine.params import GenerationRequest, GenerationResult, StreamDelta

log = logging.getLogger(__name__)

DONE = object()  # end of a job's delta stream


class QueueFull(Exception):
    """The engine's queue is full: retry later."""


@dataclass
class Job:
    requests: list[GenerationRequest]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    deltas: asyncio.Queue | None = None  # (local request index, StreamDelta), then DONE
    enqueued: float = field(default_factory=time.perf_counter)
    # set on the event loop, read by the worker thread (a plain bool: one atomic store)
    cancelled: bool = False

    def cancel(self) -> None:
        """The client went away: drop the job, or stop decoding it (see the module doc)."""
        self.cancelled = True

    def _finish(self, result: list[GenerationResult] | BaseException) -> None:
        if not self.future.done():
            if isinstance(result, BaseException):
                self.future.set_exception(result)
            else:
                self.future.set_result(result)
        if self.deltas is not None:
            self.deltas.put_nowait(DONE)


class Batcher:
    def __init__(self, engine, max_batch: int = 16, max_queue: int = 256,
                 wait_ms: float = 0.0, on_batch=None):
        self.engine = engine
        self.on_batch = on_batch  # called with the number of requests of each engine call
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000
        self._q: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._stop = False
        self.batches = 0
        self.batched_requests = 0
        self.dropped = 0  # jobs cancelled while queued: they never reached the engine
        self.cancellable = getattr(engine, "cancellable", False)
        self._thread = threading.Thread(target=self._run, name="engine-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._q.qsize()

    def submit(self, requests: list[GenerationRequest], stream: bool = False) -> Job:
        loop = asyncio.get_running_loop()
        job = Job(requests, loop, loop.create_future(), asyncio.Queue() if stream else None)
        try:
            self._q.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return job

    def close(self, timeout: float = 30.0) -> None:
        self._stop = True
        with contextlib.suppress(queue.Full):
            self._q.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _take(self) -> list[Job] | None:
        """Block for a live job, then add whatever else waits (up to max_batch requests)."""
        jobs: list[Job] = []
        n, deadline = 0, 0.0
        while n < self.max_batch:
            try:
                if not jobs:
                    job = self._q.get()
                else:
                    left = deadline - time.perf_counter()
                    job = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if job is None:
                if not jobs:
                    return None
                self._stop = True
                break
            if job.cancelled:
                self.dropped += 1
                continue
            if not jobs:
                deadline = time.perf_counter() + self.wait_s
            jobs.append(job)
            n += len(job.requests)
        return jobs

    @staticmethod
    def _on_delta(owners: list) -> Callable[[StreamDelta], None]:
        """Each streamed delta to its job's event loop (none once the job is cancelled)."""
        def on_delta(d: StreamDelta) -> None:
            job, li = owners[d.request_index]
            if job.deltas is not None and not job.cancelled:
                job.loop.call_soon_threadsafe(job.deltas.put_nowait, (li, d))

        return on_delta

    def _engine_kw(self, owners: list) -> dict:
        """is_cancelled for an engine that takes it: owners[i] = (job, local index)."""
        if not self.cancellable:
            return {}
        return {"is_cancelled": lambda i: owners[i][0].cancelled}

    def _run(self) -> None:
        while not self._stop:
            jobs = self._take()
            if jobs is None:
                break
            self._run_batch(jobs)

    def _run_batch(self, jobs: list[Job]) -> None:
        requests, owners = [], []  # owners[i] = (job, local index) of requests[i]
        for job in jobs:
            for li, r in enumerate(job.requests):
                requests.append(r)
                owners.append((job, li))
        if self.max_batch > 1 and self.engine.continuous_batching:
            self._run_continuous(requests, owners)
            return
        streaming = any(j.deltas is not None for j in jobs)

        try:
            results = self.engine.generate(requests,
                                           self._on_delta(owners) if streaming else None,
                                           **self._engine_kw(owners))
        except Exception as e:
            if len(jobs) > 1 and not streaming:  # isolate the request that broke the batch
                for job in jobs:
                    self._run_batch([job])
                return
            log.warning("engine failed on a batch of %d requests: %s", len(requests),
                        type(e).__name__)
            for job in jobs:
                job.loop.call_soon_threadsafe(job._finish, e)
            return
        self._count(len(requests))
        start = 0
        for job in jobs:
            part = results[start : start + len(job.requests)]
            start += len(job.requests)
            job.loop.call_soon_threadsafe(job._finish, part)

    def _count(self, n: int) -> None:
        self.batches += 1
        self.batched_requests += n
        if self.on_batch is not None:
            self.on_batch(n)

    def _run_continuous(self, requests: list[GenerationRequest], owners: list) -> None:
        """Continuous batching: jobs that arrive while the engine decodes join its running
        batch between two decode steps, and each job is answered as soon as it finishes.
        Every request enters through `admit`, so one that cannot run fails alone."""
        first = list(requests)
        initial, owners = list(owners), []  # owners: engine index -> (job, local index)
        parts: dict[int, list] = {}  # id(job) -> its results so far
        answered: set[int] = set()

        def admit(free: int) -> list[GenerationRequest]:
            if first:
                owners.extend(initial)
                batch = first[:]
                first.clear()
                return batch
            new: list[GenerationRequest] = []
            while len(new) < free and not self._stop:
                try:
                    job = self._q.get_nowait()
                except queue.Empty:
                    break
                if job is None:  # close(): finish what runs, admit nothing more
                    self._stop = True
                    break
                if job.cancelled:
                    self.dropped += 1
                    continue
                for li, r in enumerate(job.requests):
                    new.append(r)
                    owners.append((job, li))
            if new:
                self._count(len(new))
            return new

        def on_result(index: int, result: GenerationResult | Exception) -> None:
            job, li = owners[index]
            if id(job) in answered:
                return
            if isinstance(result, Exception):
                answered.add(id(job))
                parts.pop(id(job), None)
                job.loop.call_soon_threadsafe(job._finish, result)
                return
            got = parts.setdefault(id(job), [None] * len(job.requests))
            got[li] = result
            if all(r is not None for r in got):
                answered.add(id(job))
                del parts[id(job)]
                job.loop.call_soon_threadsafe(job._finish, got)

        self._count(len(requests))
        try:
            self.engine.generate([], self._on_delta(owners), admit=admit, on_result=on_result,
                                 **self._engine_kw(owners))
        except Exception as e:
            log.warning("engine failed: %s", type(e).__name__)
            for job in {id(j): j for j, _ in owners}.values():
                if id(job) not in answered:
                    job.loop.call_soon_threadsafe(job._finish, e)
