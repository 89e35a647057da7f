"""Retries, a circuit breaker and an adaptive concurrency limit.

- ``RetryPolicy``: exponential backoff with full jitter, capped; Retry-After is
  a floor. Pure: it answers "retry after N seconds" or "give up";
  ``call_with_retries`` is the small async loop around it, with ``sleep`` and
  the random source injected so tests record the waits instead of sleeping.
- ``CircuitBreaker``: per endpoint; a state machine over an injectable clock.
- ``AdaptiveLimiter``: requests in flight, halved on 503, regrown slowly (AIMD).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import LLMDecideError

__all__ = ["AdaptiveLimiter", "CircuitBreaker", "RetryPolicy", "call_with_retries", "is_transient"]

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: timeouts, lost connections, 5xx, 503, 429."""
    return isinstance(exc, LLMDecideError) and exc.transient


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait before retrying a transient failure.

    >>> policy = RetryPolicy(retries=3, base=1.0, cap=30.0)
    >>> [policy.backoff_ceiling(n) for n in range(3)]
    [1.0, 2.0, 4.0]
    """

    #: Retries after the first attempt (the original design: 3).
    retries: int = 3
    #: Ceiling of the first wait in seconds; doubles on every retry.
    base: float = 1.0
    #: No single wait is longer than this (Retry-After included).
    cap: float = 30.0

    def backoff_ceiling(self, retry_index: int) -> float:
        """Upper bound of the wait before retry number ``retry_index`` (0-based)."""
        return min(self.cap, self.base * (2.0**retry_index))

    def delay(
        self, retry_index: int, rng: random.Random, retry_after: float | None = None
    ) -> float:
        """Full jitter (uniform in 0..ceiling), but never shorter than the server asked."""
        wait = rng.uniform(0.0, self.backoff_ceiling(retry_index))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait

    def should_retry(self, exc: BaseException, retry_index: int) -> bool:
        return retry_index < self.retries and is_transient(exc)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    rng: random.Random,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_retry: Callable[[BaseException, int, float], object] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, a non-transient error, or retries run out."""
    retry_index = 0
    while True:
        try:
            return await attempt()
        except LLMDecideError as exc:
            if not policy.should_retry(exc, retry_index):
                raise
            wait = policy.delay(retry_index, rng, getattr(exc, "retry_after", None))
            if on_retry is not None:
                on_retry(exc, retry_index, wait)
            await sleep(wait)
            retry_index += 1


class CircuitBreaker:
    """Stops hammering a server that keeps failing; lets one probe through now and then.

    Closed: requests flow. After ``failure_threshold`` consecutive transient
    failures it opens for ``open_seconds``; then the first caller becomes the
    probe (half-open) while the others keep waiting; the probe's success closes
    it, its failure opens it again. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        open_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], object] | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._clock = clock
        #: Called with (old state, new state); the Decider points it at its Events.
        self.on_change = on_change
        self.state = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False

    def _move(self, state: str) -> None:
        if state != self.state:
            old, self.state = self.state, state
            if self.on_change is not None:
                self.on_change(old, state)

    def wait_time(self) -> float:
        """0 if a request may go now (claiming the probe if half-open), else seconds to wait."""
        if self.state == "closed":
            return 0.0
        if self.state == "open":
            remaining = self._opened_at + self.open_seconds - self._clock()
            if remaining > 0:
                return remaining
            self._move("half_open")
        if not self._probe_out:
            self._probe_out = True
            return 0.0
        return min(0.1, self.open_seconds)  # the probe is out: check back soon

    def record_success(self) -> None:
        self._failures = 0
        self._probe_out = False
        self._move("closed")

    def record_failure(self) -> None:
        self._failures += 1
        if self.state == "half_open" or self._failures >= self.failure_threshold:
            self._probe_out = False
            self._opened_at = self._clock()
            self._move("open")

    def release_probe(self) -> None:
        """The probe ended without a verdict (e.g. a 4xx or a cancellation)."""
        self._probe_out = False


class AdaptiveLimiter:
    """At most ``limit`` holders at once, FIFO; the limit adapts (AIMD).

    ``on_busy()`` (the server said 503) halves the limit, down to 1;
    ``on_success()`` raises it by one after ``limit`` successes in a row, up to
    ``maximum``. With a server that never says 503 it is a plain semaphore.
    """

    def __init__(self, maximum: int, on_change: Callable[[int], object] | None = None) -> None:
        self.maximum = maximum
        self.limit = maximum
        self._on_change = on_change
        self._in_use = 0
        self._successes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        return self._in_use

    async def acquire(self) -> None:
        if self._in_use < self.limit and not self._waiters:
            self._in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as we were cancelled: give it back
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)

    def _set_limit(self, limit: int) -> None:
        if limit != self.limit:
            self.limit = limit
            if self._on_change is not None:
                self._on_change(limit)
            self._wake()

    def on_busy(self) -> None:
        self._successes = 0
        self._set_limit(max(1, self.limit // 2))

    def on_success(self) -> None:
        if self.limit >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self._set_limit(self.limit + 1)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
