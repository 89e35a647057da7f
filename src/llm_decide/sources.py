"""Turn any iterable (sync or async) into chunks of what has arrived, with bounded memory.

A synchronous iterable (a file, stdin, a list) is read in a background thread so
a slow read never blocks the event loop; an async iterable is pumped by a task.
Both feed one bounded buffer. The consumer gets everything that has arrived as
one chunk, plus ``stalled``: nothing more is waiting right now, so a partial
batch should go out instead of waiting for input that may take a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Generic, TypeVar

from .models import Article, ErrorRecord

__all__ = ["StreamItem", "iter_chunks"]

StreamItem = Article | ErrorRecord
T = TypeVar("T")

#: Items read ahead of the engine at most.
DEFAULT_READ_AHEAD = 2048
#: How long a small chunk waits for more input before a partial batch goes out.
DEFAULT_LINGER = 0.02


class _Inbox(Generic[T]):
    """A bounded deque filled by a thread or a task; one wake-up per burst, not per item."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._loop = loop
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Condition()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._finished = False
        self._error: BaseException | None = None
        self.stopped = False

    # producer side (thread) ----------------------------------------------------

    def put_from_thread(self, item: T) -> bool:
        with self._lock:
            while len(self._items) >= self._capacity and not self.stopped:
                self._lock.wait()
            if self.stopped:
                return False
            was_empty = not self._items
            self._items.append(item)
        if was_empty:
            self._wake_from_thread()
        return True

    def finish_from_thread(self, error: BaseException | None) -> None:
        with self._lock:
            self._finished, self._error = True, error
        self._wake_from_thread()

    def _wake_from_thread(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is closed: the consumer is gone, nobody to wake
            self.stop()

    # producer side (task) -------------------------------------------------------

    async def put(self, item: T) -> None:
        while True:
            with self._lock:
                if len(self._items) < self._capacity:
                    self._items.append(item)
                    break
                self._room.clear()
            await self._room.wait()
        self._ready.set()

    def finish(self, error: BaseException | None) -> None:
        with self._lock:
            self._finished, self._error = True, error
        self._ready.set()

    # consumer side ---------------------------------------------------------------

    def _drain(self) -> tuple[list[T], bool, BaseException | None]:
        with self._lock:
            self._ready.clear()
            chunk = list(self._items)
            self._items.clear()
            finished, error = self._finished, self._error
            self._lock.notify_all()
        self._room.set()
        return chunk, finished, error

    async def chunks(self, linger: float) -> AsyncIterator[tuple[list[T], bool]]:
        while True:
            await self._ready.wait()
            chunk, finished, error = self._drain()
            if chunk and not finished and len(chunk) < self._capacity // 4:
                # A small chunk: give the input `linger` seconds to catch up, so
                # batches fill instead of going out half-empty.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), linger)
                more, finished, error = self._drain()
                chunk += more
            if chunk:
                yield chunk, not finished
            if finished:
                if error is not None:
                    raise error
                return

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            self._lock.notify_all()


async def iter_chunks(
    items: Iterable[T] | AsyncIterable[T],
    read_ahead: int = DEFAULT_READ_AHEAD,
    linger: float = DEFAULT_LINGER,
) -> AsyncIterator[tuple[list[T], bool]]:
    """Chunks of arrived items and whether the input has stalled after them."""
    inbox: _Inbox[T] = _Inbox(asyncio.get_running_loop(), read_ahead)
    pump: asyncio.Task[None] | None = None
    if isinstance(items, AsyncIterable):
        pump = asyncio.create_task(_pump_async(items, inbox))
    else:
        threading.Thread(
            target=_pump_sync, args=(items, inbox), name="llm-decide-reader", daemon=True
        ).start()
    try:
        async for chunk in inbox.chunks(linger):
            yield chunk
    finally:
        inbox.stop()
        if pump is not None and not pump.done():
            pump.cancel()


def _pump_sync(items: Iterable[T], inbox: _Inbox[T]) -> None:
    error: BaseException | None = None
    try:
        for item in items:
            if not inbox.put_from_thread(item):
                return
    except BaseException as exc:  # handed to the consumer, which re-raises it
        error = exc
    inbox.finish_from_thread(error)


async def _pump_async(items: AsyncIterable[T], inbox: _Inbox[T]) -> None:
    error: BaseException | None = None
    try:
        async for item in items:
            await inbox.put(item)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # handed to the consumer, which re-raises it
        error = exc
    inbox.finish(error)
