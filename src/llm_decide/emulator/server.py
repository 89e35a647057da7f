"""An Ollama-compatible server for tests, demos and benchmarks (aiohttp.web, real sockets).

Routes, bodies and error texts follow Ollama's own (see docs/ollama-api facts in
the README): ``/``, ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/show``,
``/api/chat`` (NDJSON streaming by default, one JSON object with
``stream:false``), ``/v1/chat/completions`` and ``/v1/models``.

Scheduling is Ollama's: ``slots`` parallel slots per server (OLLAMA_NUM_PARALLEL)
with FIFO waiting; the wait counts in ``total_duration`` only. Each request then
takes ``base_latency + per_prompt_token * prompt tokens + per_output_token *
output tokens`` seconds in its slot.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .answers import answer_for, estimate_tokens, find_articles, is_batch_schema
from .faults import FaultPlan, render_answer

__all__ = ["Emulator", "EmulatorConfig", "EmulatorStats", "emulator_in_thread", "serve_emulator"]

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
VERSION = "0.12.6"
_DIGEST = "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"


@dataclass
class EmulatorConfig:
    models: tuple[str, ...] = ("llama3.2:3b",)
    #: Parallel slots per server, like OLLAMA_NUM_PARALLEL (Ollama's default is 1).
    slots: int = 1
    base_latency: float = 0.0
    per_prompt_token: float = 0.0
    per_output_token: float = 0.0
    #: Requests waiting for a slot beyond this get Ollama's 503 (OLLAMA_MAX_QUEUE).
    max_queue: int = 512
    #: Return batch items in a shuffled order (a real model does not keep order).
    shuffle: bool = False
    #: How long a "hang" fault holds the request (longer than any client timeout).
    hang_seconds: float = 3600.0
    #: How long a "slow_headers" fault delays the response headers.
    slow_headers_seconds: float = 2.0
    faults: FaultPlan = field(default_factory=FaultPlan)


@dataclass
class EmulatorStats:
    chat_requests: int = 0
    batch_requests: int = 0
    single_requests: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    #: Client (address, port) pairs seen: one per TCP connection.
    connections: set[tuple[str, int]] = field(default_factory=set)
    #: How often each article id appeared in a chat prompt.
    articles_seen: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    busy_seconds: float = 0.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _openai_error(status: int, message: str) -> web.Response:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status)


class _ChatFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Emulator:
    """The server's state; ``app`` is the aiohttp application."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.stats = EmulatorStats()
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self.app = web.Application()
        self.app.router.add_route("GET", "/", self.root)
        self.app.router.add_route("GET", "/api/version", self.version)
        self.app.router.add_route("GET", "/api/tags", self.tags)
        self.app.router.add_route("GET", "/api/ps", self.ps)
        self.app.router.add_post("/api/show", self.show)
        self.app.router.add_post("/api/chat", self.chat)
        self.app.router.add_post("/v1/chat/completions", self.openai_chat)
        self.app.router.add_route("GET", "/v1/models", self.openai_models)
        # Not Ollama's: the emulator's own counters, for benchmarks and tests across processes.
        self.app.router.add_route("GET", "/_emulator/stats", self.own_stats)

    # -- helpers ---------------------------------------------------------------

    def has_model(self, name: str) -> str | None:
        def norm(n: str) -> str:
            return n if ":" in n else f"{n}:latest"

        for model in self.config.models:
            if norm(model) == norm(name):
                return model
        return None

    def _track(self, request: web.Request, route: str) -> None:
        self.stats.routes[route] += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.stats.connections.add((str(peer[0]), int(peer[1])))

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-05-04T17:37:44.706015396-07:00",
            "size": 2019393189,
            "digest": _DIGEST,
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "llama",
                "families": ["llama"],
                "parameter_size": "3.2B",
                "quantization_level": "Q4_K_M",
            },
        }

    # -- simple routes -----------------------------------------------------------

    async def root(self, request: web.Request) -> web.Response:
        self._track(request, "/")
        return web.Response(text="Ollama is running")

    async def version(self, request: web.Request) -> web.Response:
        self._track(request, "/api/version")
        return web.json_response({"version": VERSION})

    async def tags(self, request: web.Request) -> web.Response:
        self._track(request, "/api/tags")
        return web.json_response({"models": [self._model_entry(m) for m in self.config.models]})

    async def ps(self, request: web.Request) -> web.Response:
        self._track(request, "/api/ps")
        models = [
            self._model_entry(m)
            | {
                "expires_at": "2099-01-01T00:00:00Z",
                "size_vram": 2019393189,
                "context_length": 4096,
            }
            for m in self.config.models
        ]
        return web.json_response({"models": models})

    async def show(self, request: web.Request) -> web.Response:
        self._track(request, "/api/show")
        try:
            body = await request.json()
        except ValueError:
            return _json_error(400, "invalid character in request body")
        name = str(body.get("model") or body.get("name") or "")
        if not name:
            return _json_error(400, "model is required")
        if self.has_model(name) is None:
            return _json_error(404, f"model '{name}' not found")
        return web.json_response(
            {
                "license": "",
                "modelfile": f"FROM {name}",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": self._model_entry(name)["details"],
                "model_info": {"llama.context_length": 131072},
                "capabilities": ["completion", "tools"],
                "modified_at": "2025-05-04T17:37:44.706015396-07:00",
            }
        )

    async def own_stats(self, request: web.Request) -> web.Response:
        stats = self.stats
        return web.json_response(
            {
                "chat_requests": stats.chat_requests,
                "batch_requests": stats.batch_requests,
                "single_requests": stats.single_requests,
                "connections": len(stats.connections),
                "articles_seen": sum(stats.articles_seen.values()),
                "max_in_flight": stats.max_in_flight,
                "faults": dict(stats.faults),
            }
        )

    async def openai_models(self, request: web.Request) -> web.Response:
        self._track(request, "/v1/models")
        data = [
            {"id": m, "object": "model", "created": 1746405464, "owned_by": "library"}
            for m in self.config.models
        ]
        return web.json_response({"object": "list", "data": data or None})

    # -- chat ----------------------------------------------------------------------

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            raise _ChatFailure(400, "missing request body")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _ChatFailure(
                400, f"invalid character looking for beginning of value ({exc})"
            ) from None
        if not isinstance(body, dict):
            raise _ChatFailure(400, "json: cannot unmarshal into Go value of type api.ChatRequest")
        return body

    async def _generate(
        self, request: web.Request, body: dict[str, Any], schema: Any
    ) -> tuple[str, dict[str, Any], str | None]:
        """Run one chat in a slot: (content, metrics, transport fault to apply)."""
        started = time.perf_counter()
        messages = body.get("messages") or []
        batch = is_batch_schema(schema)
        fault = self.config.faults.next_fault(batch)
        if fault:
            self.stats.faults[fault] += 1
        self.stats.chat_requests += 1
        if batch:
            self.stats.batch_requests += 1
        else:
            self.stats.single_requests += 1
        for article in find_articles(messages):
            self.stats.articles_seen[article.id] += 1
        if fault == "busy_503":
            raise _ChatFailure(503, BUSY_MESSAGE)
        if fault == "error_500":
            raise _ChatFailure(500, "llama runner process has terminated: exit status 2")
        if fault == "hang":
            await asyncio.sleep(self.config.hang_seconds)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.slots)
        if self._waiting >= self.config.max_queue:
            raise _ChatFailure(503, BUSY_MESSAGE)
        prompt_text = "".join(str(m.get("content", "")) for m in messages)
        prompt_tokens = estimate_tokens(prompt_text)
        content = render_answer(
            answer_for(messages, schema),
            fault,
            self.config.faults.rng,
            shuffle=self.config.shuffle,
        )
        output_tokens = estimate_tokens(content)
        latency = (
            self.config.base_latency
            + self.config.per_prompt_token * prompt_tokens
            + self.config.per_output_token * output_tokens
        )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        slot_started = time.perf_counter()
        try:
            if latency > 0:
                await asyncio.sleep(latency)
        finally:
            self.stats.in_flight -= 1
            self.stats.busy_seconds += time.perf_counter() - slot_started
            self._slots.release()
        if fault == "slow_headers":
            await asyncio.sleep(self.config.slow_headers_seconds)
        total_ns = int((time.perf_counter() - started) * 1e9)
        prompt_ns = int(self.config.per_prompt_token * prompt_tokens * 1e9)
        metrics = {
            "total_duration": total_ns,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": output_tokens,
            "eval_duration": max(1, total_ns - prompt_ns),
        }
        return content, metrics, fault if fault == "reset" else None

    def _check_request(self, body: dict[str, Any]) -> tuple[str, Any]:
        name = body.get("model")
        if not name:
            raise _ChatFailure(400, "model is required")
        if self.has_model(str(name)) is None:
            raise _ChatFailure(404, f"model '{name}' not found")
        schema = body.get("format")
        if schema in (None, "", "json") or isinstance(schema, dict):
            return str(name), schema
        raise _ChatFailure(
            500,
            f"invalid format: {json.dumps(schema)!r}; "
            'expected "json" or a valid JSON Schema object',
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self._track(request, "/api/chat")
        try:
            body = await self._read_json(request)
            model, schema = self._check_request(body)
            if not body.get("messages"):
                return web.json_response(
                    {
                        "model": model,
                        "created_at": _now(),
                        "message": {"role": "assistant", "content": ""},
                        "done_reason": "load",
                        "done": True,
                    }
                )
            content, metrics, transport_fault = await self._generate(request, body, schema)
        except _ChatFailure as failure:
            return _json_error(failure.status, failure.message)
        if transport_fault == "reset":
            return await self._reset(request)
        if body.get("stream", True) is False:
            return web.json_response(
                {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": content},
                    "done": True,
                    "done_reason": "stop",
                    **metrics,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        step = max(1, len(content) // 4)
        for start in range(0, len(content), step):
            chunk = {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": content[start : start + step]},
                "done": False,
            }
            await response.write(json.dumps(chunk).encode() + b"\n")
        final = {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            **metrics,
        }
        await response.write(json.dumps(final).encode() + b"\n")
        await response.write_eof()
        return response

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        """Start a response, then drop the connection mid-body."""
        response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
        await response.prepare(request)
        await response.write(b'{"model":"')
        if request.transport is not None:
            request.transport.abort()
        return response

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        self._track(request, "/v1/chat/completions")
        try:
            body = await self._read_json(request)
            if not body.get("messages"):
                raise _ChatFailure(400, "[] is too short - 'messages'")
            response_format = body.get("response_format") or {}
            schema: Any = None
            if response_format.get("type") == "json_schema":
                schema = (response_format.get("json_schema") or {}).get("schema")
            elif response_format.get("type") == "json_object":
                schema = "json"
            model, schema = self._check_request({"model": body.get("model"), "format": schema})
            content, metrics, transport_fault = await self._generate(request, body, schema)
        except _ChatFailure as failure:
            return _openai_error(failure.status, failure.message)
        if transport_fault == "reset":
            return await self._reset(request)
        completion_id = f"chatcmpl-{self.stats.chat_requests % 999}"
        usage = {
            "prompt_tokens": metrics["prompt_eval_count"],
            "completion_tokens": metrics["eval_count"],
            "total_tokens": metrics["prompt_eval_count"] + metrics["eval_count"],
        }
        created = int(time.time())
        if not body.get("stream", False):
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_ollama",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        await response.write(chunk({"role": "assistant", "content": content}, None))
        await response.write(chunk({}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@asynccontextmanager
async def serve_emulator(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[Emulator, str]]:
    """Run an emulator in the current loop; yields (emulator, base URL)."""
    emulator = Emulator(config)
    runner = web.AppRunner(emulator.app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    try:
        yield emulator, f"http://{host}:{bound_port}"
    finally:
        await runner.cleanup()


@contextmanager
def emulator_in_thread(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[tuple[Emulator, str]]:
    """Run an emulator on its own loop in a background thread (for sync callers)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with serve_emulator(config, host=host, port=port) as (emulator, url):
                holder["emulator"], holder["url"] = emulator, url
                ready.set()
                await stop.wait()
        except BaseException as exc:
            holder["error"] = exc
            ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())
        # Requests still held (a "hang" fault) end with the server, not after it.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())

    thread = threading.Thread(target=run, name="llm-decide-emulator", daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in holder:
        raise holder["error"]
    try:
        yield holder["emulator"], holder["url"]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
