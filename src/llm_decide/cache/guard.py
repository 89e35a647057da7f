"""Keep a run going when its cache fails: warn once, count, retry the cache later."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from ..errors import CacheUnavailable
from ..metrics import Events
from .base import CachedDecision, DecisionCache

__all__ = ["GuardedCache"]


class GuardedCache:
    """Wraps a cache; a ``CacheUnavailable`` means "no hits, nothing stored" for a while.

    After a failure the cache is left alone for ``retry_after`` seconds (so a
    dead Redis does not cost a timeout per lookup), then tried again; the first
    success after an outage is logged. Only ``CacheUnavailable`` is caught: any
    other exception is a bug and propagates.
    """

    def __init__(
        self,
        inner: DecisionCache,
        events: Events,
        *,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._events = events
        self.retry_after = retry_after
        self._clock = clock
        self._down_until: float | None = None

    @property
    def available(self) -> bool:
        return self._down_until is None

    def _skipping(self) -> bool:
        return self._down_until is not None and self._clock() < self._down_until

    def _failed(self, exc: CacheUnavailable) -> None:
        first = self._down_until is None
        self._down_until = self._clock() + self.retry_after
        self._events.cache_error(exc, first_in_outage=first)

    def _succeeded(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            self._events.cache_recovered()

    async def get_many(self, keys: Sequence[str]) -> dict[str, CachedDecision]:
        if self._skipping():
            return {}
        try:
            found = await self.inner.get_many(keys)
        except CacheUnavailable as exc:
            self._failed(exc)
            return {}
        self._succeeded()
        return found

    async def set_many(self, items: Mapping[str, CachedDecision], ttl: float | None = None) -> None:
        if self._skipping():
            self._events.cache_write_skipped(len(items))
            return
        try:
            await self.inner.set_many(items, ttl)
        except CacheUnavailable as exc:
            self._failed(exc)
            self._events.cache_write_skipped(len(items))
            return
        self._succeeded()

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        except CacheUnavailable as exc:
            self._failed(exc)
