"""Retry policy: exponential backoff with full jitter, Retry-After honoured.

The policy itself is pure (it answers "retry after N seconds" or "give up");
``call_with_retries`` is the small async loop around it, with ``sleep`` and the
random source injected so tests record the waits instead of sleeping.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import LLMDecideError

__all__ = ["RetryPolicy", "call_with_retries", "is_transient"]

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
