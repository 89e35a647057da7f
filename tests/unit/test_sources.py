from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from llm_decide.sources import iter_chunks


async def collect(items, **kwargs) -> list[tuple[list[int], bool]]:
    return [chunk async for chunk in iter_chunks(items, **kwargs)]


async def test_sync_iterable_arrives_whole_and_in_order() -> None:
    chunks = await collect(range(5000), read_ahead=100)
    assert [x for chunk, _ in chunks for x in chunk] == list(range(5000))
    # a small chunk may take one more drain while it lingers: 100 + 100 // 4 at most
    assert all(len(chunk) <= 125 for chunk, _ in chunks)


async def test_async_iterable_is_pumped() -> None:
    async def gen() -> AsyncIterator[int]:
        for i in range(50):
            yield i

    chunks = await collect(gen(), read_ahead=8)
    assert [x for chunk, _ in chunks for x in chunk] == list(range(50))


async def test_a_stall_is_reported_so_partial_batches_can_go() -> None:
    release = asyncio.Event()

    async def gen() -> AsyncIterator[int]:
        yield 1
        await release.wait()
        yield 2

    seen = []
    async for chunk, stalled in iter_chunks(gen(), linger=0.01):
        seen.append((chunk, stalled))
        release.set()
    assert seen[0] == ([1], True)
    assert [x for chunk, _ in seen for x in chunk] == [1, 2]


async def test_reading_is_lazy_and_bounded() -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    async for _chunk, _ in iter_chunks(endless(), read_ahead=64):
        break
    await asyncio.sleep(0.05)
    assert pulled <= 64 * 2 + 2


async def test_errors_from_the_source_reach_the_consumer() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await collect(broken())
