"""The seam between the engine and an LLM server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["ChatBackend", "ChatResult", "HTTPOptions"]


@dataclass(frozen=True, slots=True)
class ChatResult:
    """One chat answer with the server's own accounting (missing counts are 0)."""

    content: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Seconds, from the server's nanosecond durations.
    server_total_s: float = 0.0
    load_s: float = 0.0
    #: Seconds measured by the client around the whole request.
    wall_s: float = 0.0
    done_reason: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPOptions:
    """Connection settings for one client session (the original design's defaults)."""

    #: Whole request, connect to last byte; Ollama itself never times out.
    total_timeout: float = 300.0
    connect_timeout: float = 10.0
    #: aiohttp.TCPConnector(limit=...): connections kept open at most.
    pool_limit: int = 100
    ttl_dns_cache: int = 300


class ChatBackend(Protocol):
    """Anything that can answer a chat request constrained by a JSON schema."""

    @property
    def model(self) -> str: ...

    @property
    def endpoint(self) -> str: ...

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        schema: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        """Send one request; raise a BackendError subclass on failure."""
        ...

    async def aclose(self) -> None: ...
