"""The engine behind an asyncio server: each request is an async iterator of its updates.

The engine runs steps on its own thread; requests and cancellations reach it through a command
queue and are applied between steps, and updates go back to each request's asyncio queue. While
torch runs a step the GIL is released, so the event loop keeps serving.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from ..inputs.prompt import Prompt
from ..sampling_params import SamplingParams
from .config import EngineConfig
from .llm_engine import LLMEngine, RequestUpdate

log = logging.getLogger("glmv.engine")


class QueueFullError(RuntimeError):
    """More requests are in flight than the engine accepts; try again later."""


class AsyncLLM:
    def __init__(self, model: str | Path, config: EngineConfig | None = None):
        self.engine = LLMEngine(model, config)
        cfg = self.engine.config
        self.max_in_flight = cfg.max_num_seqs + cfg.max_queued_requests
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="glmv-engine", daemon=True)
        self._thread.start()

    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    def generate(self, prompt: Prompt, params: SamplingParams, request_id: str | None = None
                 ) -> AsyncIterator[RequestUpdate]:
        """Updates of one request until it finishes. Leaving the iteration early (or cancelling the
        task) aborts the request and frees its KV blocks. Raises ValueError for a request that can
        never run and QueueFullError when too many are in flight, here, before anything is queued."""
        self.engine.check(prompt, params)
        if self.num_in_flight >= self.max_in_flight:
            raise QueueFullError(f"{self.num_in_flight} requests in flight; the limit is {self.max_in_flight}")
        request_id = request_id or secrets.token_hex(8)
        if request_id in self._streams:
            raise ValueError(f"request id {request_id!r} is already running")
        return self._updates(prompt, params, request_id)

    async def _updates(self, prompt: Prompt, params: SamplingParams, request_id: str) -> AsyncIterator[RequestUpdate]:
        updates: asyncio.Queue = asyncio.Queue()
        self._streams[request_id] = (asyncio.get_running_loop(), updates)
        self._send("add", prompt, params, request_id)
        finished = False
        try:
            while not finished:
                update = await updates.get()
                if isinstance(update, Exception):
                    raise update
                finished = update.finished
                yield update
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                self._send("abort", request_id)

    async def abort(self, request_id: str) -> None:
        """Cancel a request; returns once its KV blocks are free."""
        done = asyncio.get_running_loop().create_future()
        self._send("abort", request_id, done)
        await done

    async def idle(self) -> None:
        """Wait until every queued command has been applied and no request is running."""
        while True:
            done = asyncio.get_running_loop().create_future()
            self._send("sync", done)
            if await done:
                return
            await asyncio.sleep(0.01)

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)

    # -- the engine thread ------------------------------------------------------------------

    def _send(self, *command) -> None:
        self._commands.put(command)
        self._wake.set()

    def _run(self) -> None:
        engine = self.engine
        while not self._stopping:
            self._apply_commands()
            if not engine.has_unfinished():
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                updates = engine.step()
            except Exception as exc:  # the engine's own bookkeeping failed: fail everything in flight
                log.exception("engine loop failed")
                for request_id in list(engine.requests):
                    engine.abort(request_id)
                    self._deliver(request_id, RuntimeError(f"engine failure: {exc}"))
                continue
            for update in updates:
                self._deliver(update.request_id, update)

    def _apply_commands(self) -> None:
        engine = self.engine
        while True:
            try:
                kind, *args = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                prompt, params, request_id = args
                if request_id not in self._streams:  # cancelled before it started
                    continue
                try:
                    engine.add_request(prompt, params, request_id)
                except Exception as exc:
                    self._deliver(request_id, exc)
            elif kind == "abort":
                engine.abort(args[0])
                if len(args) > 1:
                    self._resolve(args[1], True)
            elif kind == "sync":
                self._resolve(args[0], self._commands.empty() and not engine.has_unfinished())

    def _deliver(self, request_id: str, item) -> None:
        stream = self._streams.get(request_id)
        if stream is not None:
            loop, updates = stream
            loop.call_soon_threadsafe(updates.put_nowait, item)

    @staticmethod
    def _resolve(future: asyncio.Future, value) -> None:
        future.get_loop().call_soon_threadsafe(lambda: future.done() or future.set_result(value))
