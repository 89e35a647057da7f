from __future__ import annotations

import asyncio
import random

import pytest

from llm_decide.errors import BackendHTTPError, BackendTimeout, ModelNotFound, ServerBusy
from llm_decide.resilience import AdaptiveLimiter, CircuitBreaker, RetryPolicy, call_with_retries


class FlakyCall:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def run(call: FlakyCall, policy: RetryPolicy, waits: list[float], seed: int = 1) -> str:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return await call_with_retries(call, policy, rng=random.Random(seed), sleep=sleep)


def test_backoff_ceiling_doubles_and_caps() -> None:
    policy = RetryPolicy(base=1.0, cap=5.0)
    assert [policy.backoff_ceiling(n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_full_jitter_stays_under_the_ceiling() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0)
    rng = random.Random(3)
    delays = [policy.delay(2, rng) for _ in range(500)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert max(delays) > 3.0 and min(delays) < 1.0  # spread over the whole range


async def test_transient_errors_are_retried_with_growing_waits() -> None:
    call = FlakyCall(
        [BackendTimeout("t"), ServerBusy("busy", status=503), BackendHTTPError("x", status=500)]
    )
    waits: list[float] = []
    assert await run(call, RetryPolicy(retries=3), waits) == "ok"
    assert call.calls == 4 and len(waits) == 3
    assert [w <= c for w, c in zip(waits, [1.0, 2.0, 4.0], strict=True)] == [True] * 3


async def test_gives_up_after_the_retries() -> None:
    call = FlakyCall([BackendTimeout("t")] * 5)
    waits: list[float] = []
    with pytest.raises(BackendTimeout):
        await run(call, RetryPolicy(retries=2), waits)
    assert call.calls == 3 and len(waits) == 2


@pytest.mark.parametrize("error", [BackendHTTPError("bad", status=400), ModelNotFound("m")])
async def test_client_errors_are_not_retried(error: Exception) -> None:
    call = FlakyCall([error])
    waits: list[float] = []
    with pytest.raises(type(error)):
        await run(call, RetryPolicy(retries=3), waits)
    assert call.calls == 1 and waits == []


async def test_retry_after_is_a_floor() -> None:
    call = FlakyCall([ServerBusy("busy", status=503, retry_after=7.0)])
    waits: list[float] = []
    await run(call, RetryPolicy(retries=3, cap=30), waits)
    assert waits == [7.0]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_then_probes() -> None:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        failure_threshold=3,
        open_seconds=5,
        clock=clock,
        on_change=lambda a, b: changes.append((a, b)),
    )
    breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    for _ in range(3):
        assert breaker.wait_time() == 0
        breaker.record_failure()
    assert breaker.state == "open" and breaker.wait_time() == 5
    clock.now += 4
    assert breaker.wait_time() == pytest.approx(1)
    clock.now += 1
    assert breaker.wait_time() == 0  # this caller is the probe
    assert breaker.state == "half_open"
    assert breaker.wait_time() > 0  # everyone else waits for the probe
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state == "open"
    clock.now += 5
    assert breaker.wait_time() == 0
    breaker.record_success()
    assert breaker.state == "closed" and breaker.wait_time() == 0
    assert changes == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


async def test_adaptive_limit_halves_on_busy_and_regrows() -> None:
    limits: list[int] = []
    limiter = AdaptiveLimiter(8, on_change=limits.append)
    limiter.on_busy()
    limiter.on_busy()
    assert limiter.limit == 2
    for _ in range(2 + 3):
        limiter.on_success()
    assert limiter.limit == 4  # +1 after `limit` successes: 2 -> 3 after 2, 3 -> 4 after 3
    limiter.on_busy()
    assert limits == [4, 2, 3, 4, 2]
    for _ in range(100):
        limiter.on_success()
    assert limiter.limit == 8  # never above the maximum


async def test_adaptive_limit_holds_and_queues_fifo() -> None:
    limiter = AdaptiveLimiter(2)
    order: list[int] = []
    gate = asyncio.Event()

    async def hold(n: int) -> None:
        async with limiter:
            order.append(n)
            await gate.wait()

    tasks = [asyncio.create_task(hold(n)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert order == [0, 1] and limiter.in_use == 2
    limiter.on_busy()  # limit 1: nobody new gets in until two leave
    gate.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and limiter.in_use == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    limiter.release()
    assert limiter.in_use == 0
    await asyncio.wait_for(limiter.acquire(), 1)
