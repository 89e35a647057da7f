"""In-process LRU cache with a TTL; the default of the library API."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from .base import DEFAULT_TTL_SECONDS, CachedDecision

__all__ = ["MemoryCache"]


class MemoryCache:
    """LRU with expiry; ``clock`` is injectable so tests move time instead of sleeping.

    >>> import asyncio
    >>> cache = MemoryCache(max_entries=2)
    >>> asyncio.run(cache.set_many({"k": {"label": "A", "confidence": 1.0, "reason": ""}}))
    >>> list(asyncio.run(cache.get_many(["k", "other"])))
    ['k']
    """

    __slots__ = ("_clock", "_data", "default_ttl", "max_entries")

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        default_ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.default_ttl = default_ttl
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, CachedDecision]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    async def get_many(self, keys: Sequence[str]) -> dict[str, CachedDecision]:
        now = self._clock()
        found: dict[str, CachedDecision] = {}
        for key in keys:
            entry = self._data.get(key)
            if entry is None:
                continue
            expires_at, value = entry
            if expires_at <= now:
                del self._data[key]
                continue
            self._data.move_to_end(key)
            found[key] = value
        return found

    async def set_many(self, items: Mapping[str, CachedDecision], ttl: float | None = None) -> None:
        expires_at = self._clock() + (self.default_ttl if ttl is None else ttl)
        for key, value in items.items():
            self._data[key] = (expires_at, value)
            self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def aclose(self) -> None:
        """Nothing to release; entries stay usable by other Deciders sharing this cache."""
