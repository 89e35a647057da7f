from __future__ import annotations

import random

import pytest

from llm_decide.errors import BackendHTTPError, BackendTimeout, ModelNotFound, ServerBusy
from llm_decide.resilience import RetryPolicy, call_with_retries


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
