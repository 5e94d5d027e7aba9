"""The serving logic between the routes and the engine: OpenAI request -> engine requests
(with the account's watermark) -> OpenAI response or SSE stream; fills the usage context."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from distillery.engine.params import GenerationRequest, GenerationResult, SamplingParams
from distillery.gateway.app import watermark_key_id
from distillery.gateway.batcher import DONE, QueueFull
from distillery.gateway.errors import APIError
from distillery.gateway.middleware import UsageContext
from distillery.gateway.schemas import ChatCompletionRequest, CompletionRequest
from distillery.models.chat import default_stop
from distillery.store.accounts import KeyIdentity

log = logging.getLogger(__name__)

ASYNC_TOKENIZE_CHARS = 20_000  # longer prompts are tokenized off the event loop


MIN_LOGPROB = -9999.0  # OpenAI's stand-in for -inf (outside the top-p nucleus): valid JSON


def _finite(lp: float) -> float:
    return max(lp, MIN_LOGPROB)


def _lp_chat(tok) -> dict:
    def item(text: str, lp: float) -> dict:
        return {"token": text, "logprob": _finite(lp), "bytes": list(text.encode())}

    return {**item(tok.token, tok.logprob),
            "top_logprobs": [item(t, lp) for _i, t, lp in tok.top]}


def _lp_completion(tokens, with_top: bool) -> dict:
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t.token)
    return {"tokens": [t.token for t in tokens],
            "token_logprobs": [_finite(t.logprob) for t in tokens],
            "top_logprobs": [{tt: _finite(lp) for _i, tt, lp in t.top} for t in tokens]
            if with_top else None,
            "text_offset": offsets}


class GatewayService:
    def __init__(self, gw) -> None:
        self.gw = gw  # config, engine, batcher, watermark
        self._charging: set[asyncio.Task] = set()  # limiter charges of dropped requests

    # -- request -> engine requests ------------------------------------------------------
    def _check_model(self, model: str) -> None:
        if model != self.gw.engine.model_name:
            raise APIError(404, f"model {model!r} does not exist: this server serves "
                           f"{self.gw.engine.model_name!r} (see /v1/models)", "model_not_found",
                           "model")

    async def _encode(self, text: str) -> list[int]:
        tok = self.gw.engine.tokenizer
        if len(text) > ASYNC_TOKENIZE_CHARS:
            return await asyncio.to_thread(tok.encode, text)
        return tok.encode(text)

    def _params(self, body, max_tokens: int | None, prompt_len: int, logprobs: bool,
                top_logprobs: int, extra_stop: list[str], ident: KeyIdentity,
                ctx: UsageContext) -> SamplingParams:
        cfg, engine = self.gw.config, self.gw.engine
        context = getattr(engine, "max_context", 8192)
        if prompt_len > cfg.max_prompt_tokens or prompt_len >= context:
            raise APIError(400, f"the prompt has {prompt_len} tokens; this server accepts at "
                           f"most {min(cfg.max_prompt_tokens, context - 1)}",
                           "context_length_exceeded", "messages")
        if max_tokens is None:
            max_tokens = min(cfg.default_max_tokens, context - prompt_len)
        if max_tokens > cfg.max_tokens_limit:
            raise APIError(400, f"max_tokens is {max_tokens}; this server allows at most "
                           f"{cfg.max_tokens_limit}", "invalid_value", "max_tokens")
        if prompt_len + max_tokens > context:
            raise APIError(400, f"the prompt ({prompt_len} tokens) plus max_tokens "
                           f"({max_tokens}) exceeds the model's context of {context} tokens",
                           "context_length_exceeded", "max_tokens")
        if body.n > cfg.max_n:
            raise APIError(400, f"n is {body.n}; this server allows at most {cfg.max_n}",
                           "invalid_value", "n")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        stop += [s for s in extra_stop if s not in stop]
        try:
            params = SamplingParams(
                max_tokens=min(max_tokens, cfg.generation_cap or max_tokens),
                temperature=1.0 if body.temperature is None else body.temperature,
                top_p=1.0 if body.top_p is None else body.top_p, stop=stop, seed=body.seed,
                n=body.n, repetition_penalty=body.repetition_penalty or 1.0,
                logprobs=logprobs, top_logprobs=top_logprobs)
        except ValueError as e:
            raise APIError(400, str(e), "invalid_value") from None
        ctx.sampling = {"n": body.n, "max_tokens": max_tokens,
                        "temperature": params.temperature, "top_p": params.top_p,
                        "seed": body.seed}
        ctx.params = {"stop": body.stop, "repetition_penalty": body.repetition_penalty,
                      "user": body.user} if (body.stop or body.repetition_penalty
                                             or body.user) else None
        ctx.stream, ctx.logprobs = body.stream, logprobs
        ctx.top_logprobs = top_logprobs if logprobs else None
        wm = self.gw.watermark_for(ident.account)
        if wm is not None:
            params = wm.apply(params)
            ctx.watermark_scheme, ctx.watermark_key_id = wm.name, watermark_key_id(wm)
        return params

    async def chat_requests(self, body: ChatCompletionRequest, ident: KeyIdentity,
                            ctx: UsageContext) -> list[GenerationRequest]:
        self._check_model(body.model)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        ctx.prompt = messages
        tok = self.gw.engine.tokenizer
        try:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # a template may refuse an order of roles
            raise APIError(400, f"these messages do not fit the model's chat template: {e}",
                           "invalid_messages", "messages") from None
        ids = await self._encode(text)
        ctx.prompt_tokens = len(ids)
        max_tokens = body.max_completion_tokens or body.max_tokens
        if body.top_logprobs and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs=true", "invalid_value",
                           "top_logprobs")
        params = self._params(body, max_tokens, len(ids), body.logprobs,
                              body.top_logprobs or 0, default_stop(tok), ident, ctx)
        return [GenerationRequest(ids, params)]

    async def completion_requests(self, body: CompletionRequest, ident: KeyIdentity,
                                  ctx: UsageContext) -> list[GenerationRequest]:
        self._check_model(body.model)
        if body.echo:
            raise APIError(400, "echo is not supported by this server", "unsupported", "echo")
        p = body.prompt
        prompts: list = [p] if isinstance(p, str) or (p and isinstance(p[0], int)) else list(p)
        ctx.prompt = p
        ids_list = []
        for q in prompts:
            if isinstance(q, str):
                if not q.strip():
                    raise APIError(400, "prompt is empty: give some text to continue",
                                   "invalid_value", "prompt")
                ids = await self._encode(q)
            else:
                ids = list(q)
            ids_list.append(ids)
        vocab = getattr(self.gw.engine.tokenizer, "vocab_size", None)
        if vocab and any(i >= vocab for ids in ids_list for i in ids):
            raise APIError(400, f"token ids must be below the vocabulary size {vocab}",
                           "invalid_value", "prompt")
        ctx.prompt_tokens = sum(len(i) for i in ids_list)
        lp = body.logprobs is not None
        requests = []
        for ids in ids_list:
            params = self._params(body, body.max_tokens, len(ids), lp, body.logprobs or 0, [],
                                  ident, ctx)
            if not ids:
                raise APIError(400, "prompt encodes to no tokens", "invalid_value", "prompt")
            requests.append(GenerationRequest(ids, params))
        return requests

    # -- engine -------------------------------------------------------------------------
    def submit(self, requests: list[GenerationRequest], stream: bool):
        try:
            return self.gw.batcher.submit(requests, stream)
        except QueueFull:
            raise APIError(503, "the server is at capacity; retry shortly", "overloaded",
                           headers={"Retry-After": "1"}) from None

    async def results(self, job, ident: KeyIdentity, ctx: UsageContext
                      ) -> list[GenerationResult]:
        try:
            return await job.future
        except asyncio.CancelledError:  # the client went away (the middleware cancelled us)
            job.cancel()
            self._charge_dropped(ident, ctx)  # the prompt was taken: it counts
            raise
        except ValueError as e:
            raise APIError(400, str(e), "invalid_value") from None
        except Exception as e:
            log.error("engine error: %s", type(e).__name__, exc_info=e)
            raise APIError(500, "the engine failed on this request; the request id is in the "
                           "x-request-id header", "engine_error") from None

    def _charged_tokens(self, ctx: UsageContext) -> int:
        return ctx.prompt_tokens * max(1, ctx.sampling.get("n") or 1) + ctx.completion_tokens

    async def _account(self, ident: KeyIdentity, ctx: UsageContext, results) -> None:
        ctx.completion_tokens = sum(r.completion_tokens for r in results)
        await self.gw.limiter.add_tokens(ident.key_id, self._charged_tokens(ctx),
                                         self.gw.limits_for(ident))

    def _charge_dropped(self, ident: KeyIdentity, ctx: UsageContext) -> None:
        """A dropped request still spends the account's token budget: its prompt, and what
        was streamed before the drop (else a client could read nearly a whole answer and
        disconnect before the end, uncharged). Charged in a task: this one is cancelled."""
        task = asyncio.get_running_loop().create_task(self.gw.limiter.add_tokens(
            ident.key_id, self._charged_tokens(ctx), self.gw.limits_for(ident)))
        self._charging.add(task)
        task.add_done_callback(self._charging.discard)

    # -- responses ----------------------------------------------------------------------
    async def chat_response(self, job, ident: KeyIdentity, ctx: UsageContext, rid: str) -> dict:
        results = await self.results(job, ident, ctx)
        await self._account(ident, ctx, results)
        choices = results[0].choices
        ctx.responses = [c.text for c in choices]
        return {
            "id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()),
            "model": self.gw.engine.model_name, "system_fingerprint": None,
            "choices": [{
                "index": c.index, "message": {"role": "assistant", "content": c.text},
                "logprobs": {"content": [_lp_chat(t) for t in c.logprobs]}
                if c.logprobs is not None else None,
                "finish_reason": c.finish_reason} for c in choices],
            "usage": self._usage(ctx),
        }

    async def completion_response(self, job, ident: KeyIdentity, ctx: UsageContext,
                                  rid: str, with_top: bool) -> dict:
        results = await self.results(job, ident, ctx)
        await self._account(ident, ctx, results)
        choices = []
        for ri, r in enumerate(results):
            for c in r.choices:
                choices.append({
                    "index": ri * len(r.choices) + c.index, "text": c.text,
                    "logprobs": _lp_completion(c.logprobs, with_top)
                    if c.logprobs is not None else None,
                    "finish_reason": c.finish_reason})
        ctx.responses = [c["text"] for c in choices]
        return {"id": f"cmpl-{rid}", "object": "text_completion", "created": int(time.time()),
                "model": self.gw.engine.model_name, "choices": choices,
                "usage": self._usage(ctx)}

    @staticmethod
    def _usage(ctx: UsageContext) -> dict:
        return {"prompt_tokens": ctx.prompt_tokens, "completion_tokens": ctx.completion_tokens,
                "total_tokens": ctx.prompt_tokens + ctx.completion_tokens}

    async def stream(self, job, ident: KeyIdentity, ctx: UsageContext, rid: str, chat: bool,
                     n: int, with_top: bool = False, include_usage: bool = True
                     ) -> AsyncIterator[bytes]:
        """SSE chunks as the engine decodes; then a usage chunk and [DONE]. A client that
        goes away cancels the job; its usage row keeps the text streamed so far."""
        created, model = int(time.time()), self.gw.engine.model_name
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{rid}", "object": obj,
                "created": created, "model": model}
        texts: dict[int, list[str]] = {}
        if chat:
            for i in range(n):
                yield _sse({**head, "choices": [{"index": i, "delta": {"role": "assistant",
                            "content": ""}, "logprobs": None, "finish_reason": None}]})
        deltas = 0
        try:
            while (item := await job.deltas.get()) is not DONE:
                li, d = item
                deltas += 1
                index = li * n + d.choice_index
                texts.setdefault(index, []).append(d.text)
                if chat:
                    choice = {"index": index, "delta": {"content": d.text} if d.text else {},
                              "logprobs": {"content": [_lp_chat(d.token)]} if d.token
                              else None, "finish_reason": d.finish_reason}
                else:
                    choice = {"index": index, "text": d.text,
                              "logprobs": _lp_completion([d.token], with_top) if d.token
                              else None, "finish_reason": d.finish_reason}
                yield _sse({**head, "choices": [choice]})
        except BaseException:  # cancelled (client gone) or closed: stop the engine's work
            job.cancel()
            ctx.completion_tokens = deltas  # one delta per decoded token, as far as it got
            ctx.responses = ["".join(texts.get(i, [])) for i in range(n * len(job.requests))]
            self._charge_dropped(ident, ctx)
            raise
        ctx.completion_tokens = deltas
        try:
            results = await self.results(job, ident, ctx)
        except APIError as e:
            ctx.error_type = e.code or "engine_error"
            ctx.finish()
            yield _sse({"error": {"message": e.message, "type": e.type, "code": e.code}})
            return
        except Exception:
            ctx.error_type = "engine_error"
            ctx.finish()
            yield _sse({"error": {"message": "the engine failed", "type": "server_error",
                                  "code": "engine_error"}})
            return
        await self._account(ident, ctx, results)
        ctx.responses = ["".join(texts.get(i, [])) for i in range(n * len(job.requests))]
        ctx.finish()
        if include_usage:
            yield _sse({**head, "choices": [], "usage": self._usage(ctx)})
        yield b"data: [DONE]\n\n"


def _sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"
