"""Redis cache on ``redis.asyncio``: MGET in chunks, pipelined ``SET ... PX``, one pool.

Every Redis error becomes ``CacheUnavailable`` here, the one translation point;
the engine's guard then carries on uncached and tries Redis again later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import CacheUnavailable, ConfigurationError
from .base import DEFAULT_TTL_SECONDS, CachedDecision

__all__ = ["RedisCache"]


class RedisCache:
    """Decisions in Redis with a TTL (48 h by default).

    ``prefix`` is put before every key (the keys already start with
    ``llm-decide:v1:``; a prefix separates tenants sharing one Redis).
    """

    def __init__(
        self,
        url: str,
        *,
        default_ttl: float = DEFAULT_TTL_SECONDS,
        prefix: str = "",
        chunk_size: int = 1000,
        connect_timeout: float = 2.0,
        socket_timeout: float = 5.0,
        max_connections: int = 32,
        client: Any | None = None,
    ) -> None:
        self.url = url
        self.default_ttl = default_ttl
        self.prefix = prefix
        self.chunk_size = chunk_size
        try:
            self._redis: Any = client or aioredis.Redis.from_url(
                url,
                socket_connect_timeout=connect_timeout,
                socket_timeout=socket_timeout,
                max_connections=max_connections,
                decode_responses=True,
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL {url!r}: {exc}") from exc

    def _unavailable(self, exc: BaseException) -> CacheUnavailable:
        return CacheUnavailable(f"Redis at {self.url}: {type(exc).__name__}: {exc}")

    async def ping(self) -> None:
        """Raise CacheUnavailable unless Redis answers."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def get_many(self, keys: Sequence[str]) -> dict[str, CachedDecision]:
        found: dict[str, CachedDecision] = {}
        try:
            for start in range(0, len(keys), self.chunk_size):
                chunk = keys[start : start + self.chunk_size]
                values = await self._redis.mget([self.prefix + key for key in chunk])
                for key, value in zip(chunk, values, strict=True):
                    if value is not None:
                        found[key] = orjson.loads(value)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return found

    async def set_many(self, items: Mapping[str, CachedDecision], ttl: float | None = None) -> None:
        milliseconds = max(1, round((self.default_ttl if ttl is None else ttl) * 1000))
        entries = list(items.items())
        try:
            for start in range(0, len(entries), self.chunk_size):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, value in entries[start : start + self.chunk_size]:
                        pipe.set(self.prefix + key, orjson.dumps(value), px=milliseconds)
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def aclose(self) -> None:
        await self._redis.aclose()
