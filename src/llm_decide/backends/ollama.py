"""Ollama's native API: ``POST /api/chat`` with ``stream: false`` and a JSON-schema ``format``.

One ``aiohttp.ClientSession`` per backend (so per Decider), created on first use
inside the running loop and closed by ``aclose()``; a session passed in by the
caller is used as is and left open. Every aiohttp failure is translated into the
llm-decide error tree in exactly one place, ``_translate``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson

from ..errors import (
    BackendError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnavailable,
    ModelNotFound,
    ServerBusy,
)
from .base import ChatResult, HTTPOptions

__all__ = ["DEFAULT_OPTIONS", "OllamaBackend", "parse_chat_body"]

#: Deterministic decoding unless the user says otherwise.
DEFAULT_OPTIONS: dict[str, Any] = {"temperature": 0}
_NS = 1e-9
_JSON = {"Content-Type": "application/json"}


class OllamaBackend:
    """Client for one Ollama server.

    >>> backend = OllamaBackend(base_url="http://localhost:11434", model="llama3.2:3b")
    >>> backend.endpoint
    'http://localhost:11434'
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        options: Mapping[str, Any] | None = None,
        keep_alive: str | int | None = None,
        http: HTTPOptions | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._model = model
        self.options: dict[str, Any] = {**DEFAULT_OPTIONS, **(options or {})}
        self.keep_alive = keep_alive
        self.http = http or HTTPOptions()
        self._session = session
        self._owns_session = session is None
        self._closed = False

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        return self._base_url

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use (must be inside the running loop)."""
        if self._closed:
            raise BackendUnavailable(
                f"the client for {self._base_url} is closed", url=self._base_url
            )
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.http.pool_limit, ttl_dns_cache=self.http.ttl_dns_cache
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self.http.total_timeout, sock_connect=self.http.connect_timeout
                ),
                headers={"User-Agent": "llm-decide"},
            )
            self._owns_session = True
        return self._session

    def pool_usage(self) -> tuple[int, int, int]:
        """(in use, idle, limit) connections of the session's connector."""
        session = self._session
        if session is None or session.closed or session.connector is None:
            return (0, 0, self.http.pool_limit)
        connector = session.connector
        in_use = len(getattr(connector, "_acquired", ()))
        idle = sum(len(conns) for conns in getattr(connector, "_conns", {}).values())
        return (in_use, idle, connector.limit)

    async def aclose(self) -> None:
        self._closed = True
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        schema: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": list(messages),
            "stream": False,
            "options": self.options,
        }
        if schema is not None:
            body["format"] = schema
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        url = f"{self._base_url}/api/chat"
        started = time.perf_counter()
        with _translate(url):
            # orjson: a batch prompt is a few KB of JSON each way, on the hot path.
            async with self.session.post(url, data=orjson.dumps(body), headers=_JSON) as response:
                text = await response.text(errors="replace")
                if response.status != 200:
                    raise _status_error(response.status, text, url, self._model, response.headers)
        result = parse_chat_body(text, url)
        return ChatResult(
            content=result["content"],
            model=str(result.get("model") or self._model),
            prompt_tokens=int(result.get("prompt_eval_count") or 0),
            completion_tokens=int(result.get("eval_count") or 0),
            server_total_s=int(result.get("total_duration") or 0) * _NS,
            load_s=int(result.get("load_duration") or 0) * _NS,
            wall_s=time.perf_counter() - started,
            done_reason=result.get("done_reason"),
        )

    async def version(self) -> str | None:
        """The server's version, or None when it does not say (not every server has it)."""
        data = await self._get_json("/api/version")
        value = data.get("version") if isinstance(data, dict) else None
        return str(value) if value is not None else None

    async def list_models(self) -> list[str]:
        """Names of the models pulled on the server (``GET /api/tags``)."""
        data = await self._get_json("/api/tags")
        models = data.get("models") if isinstance(data, dict) else None
        return [str(m.get("name")) for m in models or [] if isinstance(m, dict)]

    async def _get_json(self, path: str) -> Any:
        url = f"{self._base_url}{path}"
        with _translate(url):
            async with self.session.get(url) as response:
                text = await response.text(errors="replace")
                if response.status != 200:
                    raise _status_error(response.status, text, url, self._model, response.headers)
        try:
            return json.loads(text)
        except ValueError:
            return None


def model_names_match(wanted: str, available: str) -> bool:
    """Ollama treats ``llama3.2`` and ``llama3.2:latest`` as one model."""

    def norm(name: str) -> str:
        return name if ":" in name else f"{name}:latest"

    return norm(wanted) == norm(available)


def parse_chat_body(text: str, url: str) -> dict[str, Any]:
    """The answer's content and metrics from a ``/api/chat`` body.

    Accepts the buffered JSON object we ask for and, for servers that ignore
    ``stream: false``, NDJSON chunks (contents joined, metrics of the last).
    """
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = None
    chunks = [data] if isinstance(data, dict) else _ndjson(text, url)
    content: list[str] = []
    final: dict[str, Any] = {}
    for chunk in chunks:
        if "error" in chunk:
            raise BackendHTTPError(
                f"server error during the answer from {url}: {chunk['error']}", status=500, url=url
            )
        message = chunk.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            content.append(message["content"])
        final = chunk
    if not final or not isinstance(final.get("message"), dict):
        raise BackendUnavailable(
            f"malformed /api/chat response from {url}: {text[:120]!r}", url=url
        )
    return {**final, "content": "".join(content)}


def _ndjson(text: str, url: str) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            chunk = json.loads(line)
        except ValueError:
            raise BackendUnavailable(
                f"malformed /api/chat response from {url}: {line[:120]!r}", url=url
            ) from None
        if isinstance(chunk, dict):
            chunks.append(chunk)
    return chunks


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:200]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):  # OpenAI shape
            return str(error.get("message", error))
        if error is not None:
            return str(error)
    return body.strip()[:200]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; rare from LLM servers, treated as absent


def _status_error(
    status: int, body: str, url: str, model: str, headers: Mapping[str, str]
) -> BackendHTTPError:
    message = _error_text(body)
    if status == 404 and "not found" in message and "model" in message:
        return ModelNotFound(model, url=url)
    if status == 404:
        return BackendHTTPError(
            f"{url} answered 404 ({message}); is this an Ollama server? Check OLLAMA_URL",
            status=404,
            url=url,
        )
    retry_after = _retry_after(headers)
    if status == 503:
        return ServerBusy(
            f"{url} is busy (503: {message})", status=503, url=url, retry_after=retry_after
        )
    return BackendHTTPError(
        f"{url} answered HTTP {status}: {message}", status=status, url=url, retry_after=retry_after
    )


@contextmanager
def _translate(url: str) -> Iterator[None]:
    """The one place where aiohttp and socket errors become llm-decide errors."""
    try:
        yield
    except BackendError:
        raise
    except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError
        raise BackendTimeout(f"no answer from {url} within the timeout", url=url) from exc
    except aiohttp.ClientConnectorError as exc:
        raise BackendUnavailable(
            f"cannot connect to {url}: {exc.os_error or exc}; is the server running? "
            "Check OLLAMA_URL / --ollama-url",
            url=url,
        ) from exc
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise BackendUnavailable(
            f"connection to {url} failed: {type(exc).__name__}: {exc}", url=url
        ) from exc
