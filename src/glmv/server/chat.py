"""Chat completions: one handler behind the Z.AI and OpenAI routes, plain, streamed or async.

A request goes: authenticate -> parse and validate -> per-key limits -> build the prompt (media
fetched and decoded on a worker thread) -> admit it to the engine. Everything that can fail is
checked before the first byte, so errors are real HTTP errors; after a stream started, an error is
sent as a `data: {"error": ...}` event. Every request, failed ones too, leaves one usage row,
committed before the response ends.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from ..engine.async_llm import AsyncLLM, QueueFullError
from ..engine.llm_engine import RequestUpdate
from ..inputs.media import MediaError
from ..inputs.prompt import Prompt
from ..outputs.reasoning import ReasoningStream, split_reasoning
from ..outputs.tool_calls import ToolCallStream, parse_tool_calls
from ..sampling_params import MAX_TOKENS_LIMIT, SamplingParams
from . import schemas
from .auth import Authenticator, Caller
from .config import Prices
from .errors import (BAD_PARAMS, INTERNAL, INVALID_FIELD, MISSING_FIELD, NO_MODEL, OVERLOADED, PROMPT_TOO_LONG,
                     APIError)
from .metrics import Metrics
from .rate_limit import KeyLimiter
from .store import Store

log = logging.getLogger("glmv.server")

# pydantic error types that mean "a value out of its allowed set or range" (1214); other type errors are 1210
_INVALID_VALUE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long",
                  "string_too_short", "string_too_long", "literal_error", "union_tag_invalid", "union_tag_not_found",
                  "value_error", "enum"}
DISCONNECT_POLL_S = 0.5
CLIENT_CLOSED = 499


@dataclass
class Settings:
    served_model_names: list[str]
    prices: Prices = field(default_factory=Prices)
    default_temperature: float = 0.8
    default_top_p: float = 0.6
    max_request_bytes: int = 64 * 1024 * 1024
    max_async_tasks: int = 1000  # finished async results kept (oldest dropped first)


@dataclass
class Job:
    """A validated request, ready for the engine."""
    task_id: str
    request_id: str
    model: str
    created: int
    prompt: Prompt
    params: SamplingParams
    tools: list[dict] | None
    opens_thinking: bool
    stream: bool


@dataclass
class Tally:
    """What the usage row of one request will say."""
    endpoint: str
    task_id: str
    started: float
    key_id: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def count(self, update: RequestUpdate) -> None:
        self.prompt_tokens, self.cached_tokens = update.prompt_tokens, update.cached_tokens
        self.completion_tokens = update.output_tokens


@dataclass
class Answer:
    content: str
    reasoning: str | None
    tool_calls: list[dict]
    finish_reason: str

    def message(self) -> dict:
        return schemas.message(self.content, self.reasoning, self.tool_calls)


def new_task_id() -> str:
    return datetime.now().strftime("%Y%m%d%H%M%S") + secrets.token_hex(8)


def validation_error(exc: ValidationError) -> APIError:
    """The most specific pydantic error (the deepest location) as a Z.AI error."""
    err = max(exc.errors(), key=lambda e: len(e["loc"]))
    where = ""
    for part in err["loc"]:
        if isinstance(part, int):
            where += f"[{part}]"
        elif "[" not in part and part not in ("str", "int", "float", "dict", "list", "bool"):
            where += f".{part}" if where else part
    if err["type"] == "missing":
        return APIError(MISSING_FIELD, f"{where} not received")
    code = INVALID_FIELD if err["type"] in _INVALID_VALUE else BAD_PARAMS
    return APIError(code, f"invalid {where or 'request'}: {err['msg']}")


def finish_reason(last: RequestUpdate, calls: list) -> str:
    """The API's finish_reason for a finished generation; an engine failure raises."""
    if last.finish_reason == "error":
        raise RuntimeError("the engine failed while generating")
    return "tool_calls" if calls and last.finish_reason == "stop" else last.finish_reason


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


class ChatService:
    def __init__(self, llm: AsyncLLM, settings: Settings, store: Store, auth: Authenticator, limiter: KeyLimiter,
                 metrics: Metrics):
        self.llm, self.settings, self.store, self.auth = llm, settings, store, auth
        self.limiter, self.metrics = limiter, metrics
        self.background: set[asyncio.Task] = set()  # usage rows of cut streams, async jobs
        self.async_results: OrderedDict[str, dict] = OrderedDict()

    # -- the three ways in --------------------------------------------------------------------

    async def complete(self, request: Request, endpoint: str) -> Response:
        tally = Tally(endpoint, new_task_id(), time.monotonic())
        caller, acquired = None, False
        try:
            caller, job, updates = await self._admit(request, tally)
            acquired = True
            if job.stream:
                acquired = False  # the stream releases it
                return StreamingResponse(self._stream(job, updates, tally, caller), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            answer = await self._until_done(job, updates, tally, request)
            if answer is None:
                await self._record(tally, CLIENT_CLOSED, "disconnected")
                return Response(status_code=CLIENT_CLOSED)
            body = schemas.completion(job.task_id, job.request_id, job.model, job.created, answer.message(),
                                      answer.finish_reason, self._usage(tally))
            await self._record(tally, 200)
            return JSONResponse(body)
        except APIError as exc:
            await self._record(tally, exc.status, exc.code)
            return exc.response()
        except Exception:
            log.exception("request %s failed", tally.task_id)
            await self._record(tally, 500, INTERNAL)
            return APIError(INTERNAL, "internal error").response()
        finally:
            if acquired:
                self.limiter.release(caller)

    async def submit(self, request: Request) -> Response:
        """Z.AI async mode: answer with a task id at once; the result is fetched later."""
        tally = Tally("async", new_task_id(), time.monotonic())
        try:
            caller, job, updates = await self._admit(request, tally)
        except APIError as exc:
            await self._record(tally, exc.status, exc.code)
            return exc.response()
        status = {"id": job.task_id, "request_id": job.request_id, "model": job.model, "task_status": "PROCESSING",
                  "object": "chat.completion"}
        self._remember(job.task_id, {"key_id": caller.key_id, **status})
        self._detach(self._run_async(job, updates, tally, caller))
        return JSONResponse(status)

    async def result(self, request: Request, task_id: str) -> Response:
        try:
            caller = await asyncio.to_thread(self.auth.authenticate, request.headers.get("authorization"))
            entry = self.async_results.get(task_id)
            if entry is None or entry["key_id"] != caller.key_id:
                raise APIError(INVALID_FIELD, f"no async task {task_id!r} for this key")
        except APIError as exc:
            return exc.response()
        return JSONResponse({k: v for k, v in entry.items() if k != "key_id"})

    # -- validation ---------------------------------------------------------------------------

    async def _admit(self, request: Request, tally: Tally) -> tuple[Caller, Job, AsyncIterator[RequestUpdate]]:
        """Authenticate, validate, build the prompt and hand it to the engine; holds a per-key slot on success."""
        caller = await asyncio.to_thread(self.auth.authenticate, request.headers.get("authorization"))
        tally.key_id = caller.key_id
        req = await self._parse(request)
        tally.model = req.model
        if req.model not in self.settings.served_model_names:
            raise APIError(NO_MODEL, f"model {req.model!r} does not exist here; served: "
                                     f"{', '.join(self.settings.served_model_names)}")
        self.limiter.acquire(caller)
        try:
            job = await self._job(req, tally.task_id)
            return caller, job, self._start(job)
        except BaseException:
            self.limiter.release(caller)
            raise

    async def _parse(self, request: Request) -> schemas.ChatRequest:
        limit = self.settings.max_request_bytes
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > limit:
                raise APIError(BAD_PARAMS, f"request body over {limit} bytes")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise APIError(BAD_PARAMS, f"malformed JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise APIError(BAD_PARAMS, "the request body must be a JSON object")
        try:
            return schemas.ChatRequest.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc) from None

    async def _job(self, req: schemas.ChatRequest, task_id: str) -> Job:
        if not any(m.role == "user" for m in req.messages):
            raise APIError(INVALID_FIELD, "messages must include a user message")
        tools = [t.model_dump(exclude_none=True) for t in req.tools or []] if req.tool_choice != "none" else []
        tools = tools or None
        builder = self.llm.engine.prompts
        clear = req.thinking.clear_thinking if req.thinking else True
        try:
            prompt = await asyncio.to_thread(builder.build, req.template_messages(), req.thinking_enabled, tools,
                                             True, clear)
        except MediaError as exc:
            raise APIError(INVALID_FIELD, f"invalid media: {exc}") from None
        except ValueError as exc:
            raise APIError(INVALID_FIELD, f"invalid messages: {exc}") from None
        # by default the answer may fill the context; the engine's check (in _start) refuses what does not fit
        room = self.llm.engine.max_model_len - len(prompt.token_ids)
        max_tokens = req.max_tokens or req.max_completion_tokens or max(1, min(MAX_TOKENS_LIMIT, room))
        greedy = not req.do_sample or req.temperature == 0 or req.top_p == 0
        params = SamplingParams(
            temperature=0.0 if greedy else (req.temperature if req.temperature is not None
                                            else self.settings.default_temperature),
            top_p=1.0 if greedy else (req.top_p if req.top_p is not None else self.settings.default_top_p),
            max_tokens=max_tokens,
            stop=req.stop or [], seed=None if req.seed is None else req.seed % 2**63)
        request_id = task_id if req.request_id is None else str(req.request_id)
        return Job(task_id, request_id, req.model, schemas.now(), prompt, params, tools,
                   self.llm.engine.opens_thinking(prompt.token_ids), req.stream)

    def _start(self, job: Job) -> AsyncIterator[RequestUpdate]:
        try:
            return self.llm.generate(job.prompt, job.params, job.task_id)
        except QueueFullError as exc:
            raise APIError(OVERLOADED, f"the server is busy, try again shortly ({exc})") from None
        except ValueError as exc:  # the prompt and max_tokens do not fit the context or the KV cache
            raise APIError(PROMPT_TOO_LONG, f"prompt too long: {exc}") from None

    # -- generation ---------------------------------------------------------------------------

    async def _collect(self, job: Job, updates, tally: Tally) -> Answer:
        pieces, last = [], None
        async with aclosing(updates) as stream:
            async for update in stream:
                if last is None:
                    self.metrics.ttft.observe(time.monotonic() - tally.started)
                tally.count(update)
                pieces.append(update.text)
                last = update
        reasoning, content = split_reasoning("".join(pieces))
        calls = []
        if job.tools:
            content, calls = parse_tool_calls(content, job.tools)
        return Answer(content, reasoning, [c.to_dict(i) for i, c in enumerate(calls)], finish_reason(last, calls))

    async def _until_done(self, job: Job, updates, tally: Tally, request: Request) -> Answer | None:
        """The answer, or None if the client went away first (the generation is then aborted)."""
        work = asyncio.create_task(self._collect(job, updates, tally))
        while True:
            done, _ = await asyncio.wait({work}, timeout=DISCONNECT_POLL_S)
            if done:
                return work.result()
            if await request.is_disconnected():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                return None

    async def _stream(self, job: Job, updates, tally: Tally, caller: Caller):
        first, last = True, None
        reasoning, tools = ReasoningStream(job.opens_thinking), ToolCallStream(job.tools)
        make = lambda delta, **kw: sse(schemas.chunk(job.task_id, job.created, job.model, delta, **kw))  # noqa: E731
        try:
            async with aclosing(updates) as stream:
                async for update in stream:
                    if first:
                        self.metrics.ttft.observe(time.monotonic() - tally.started)
                        first = False
                    tally.count(update)
                    last = update
                    thought, content = reasoning.feed(update.text, final=update.finished)
                    content = tools.feed(content)
                    delta = {"role": "assistant"}
                    if thought:
                        delta["reasoning_content"] = thought
                    if content:
                        delta["content"] = content
                    if len(delta) > 1:
                        yield make(delta)
            rest, calls = tools.finish()
            reason = finish_reason(last, calls)
            if calls:
                yield make({"tool_calls": [c.to_dict(i) for i, c in enumerate(calls)]})
            await self._record(tally, 200)  # durable before the client sees the end
            yield make({"role": "assistant", "content": rest}, finish_reason=reason, usage_=self._usage(tally))
            yield "data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):  # the client went away: generation already aborted
            self._detach(self._record(tally, CLIENT_CLOSED, "disconnected"))
            raise
        except Exception as exc:
            log.exception("stream %s failed", tally.task_id)
            self._detach(self._record(tally, 500, INTERNAL))
            yield sse(APIError(INTERNAL, f"internal error during generation: {exc}").body())
        finally:
            self.limiter.release(caller)

    async def _run_async(self, job: Job, updates, tally: Tally, caller: Caller) -> None:
        try:
            answer = await self._collect(job, updates, tally)
            status = {"task_status": "SUCCESS", "created": job.created, "usage": self._usage(tally), "choices": [
                {"index": 0, "finish_reason": answer.finish_reason, "message": answer.message()}]}
            await self._record(tally, 200)
        except Exception as exc:
            log.exception("async task %s failed", job.task_id)
            status = {"task_status": "FAIL", "error": {"code": INTERNAL, "message": str(exc)}}
            await self._record(tally, 500, INTERNAL)
        finally:
            self.limiter.release(caller)
        self._remember(job.task_id, {**self.async_results.get(job.task_id, {}), **status})

    # -- bookkeeping --------------------------------------------------------------------------

    def _usage(self, tally: Tally) -> dict:
        return schemas.usage(tally.prompt_tokens, tally.completion_tokens, tally.cached_tokens)

    def _remember(self, task_id: str, entry: dict) -> None:
        self.async_results[task_id] = entry
        self.async_results.move_to_end(task_id)
        while len(self.async_results) > self.settings.max_async_tasks:
            oldest = next(iter(self.async_results))
            if self.async_results[oldest]["task_status"] == "PROCESSING":
                break
            del self.async_results[oldest]

    def _detach(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def drain(self) -> None:
        """Wait for async jobs and pending usage rows (at shutdown)."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

    async def _record(self, tally: Tally, status: int, error_code: str | None = None) -> None:
        latency = time.monotonic() - tally.started
        self.metrics.finished(tally.endpoint, status, tally.prompt_tokens, tally.completion_tokens, tally.cached_tokens)
        if status == 200:
            self.metrics.latency.observe(latency)
        cost = self.settings.prices.cost(tally.prompt_tokens, tally.completion_tokens, tally.cached_tokens)
        row = dict(key_id=tally.key_id, model=tally.model, task_id=tally.task_id, endpoint=tally.endpoint,
                   status=status, error_code=error_code, prompt_tokens=tally.prompt_tokens,
                   completion_tokens=tally.completion_tokens, cached_tokens=tally.cached_tokens, cost_usd=cost,
                   latency_ms=latency * 1000)
        await asyncio.to_thread(self.store.record, **row)
        log.info("%s %s key=%s status=%s prompt=%d cached=%d completion=%d %.0f ms", tally.endpoint, tally.task_id,
                 tally.key_id, status, tally.prompt_tokens, tally.cached_tokens, tally.completion_tokens,
                 latency * 1000)
