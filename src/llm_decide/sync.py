"""SyncDecider: the async engine for synchronous code, safe from many threads.

One background thread runs one event loop that holds one Decider (so one
``aiohttp.ClientSession`` and one connection pool). Callers in any thread
submit coroutines to it and block on the result. The original design made a
new loop and a new session per call, which opened a new TCP connection per
batch; here 100 calls from 4 threads share a handful of kept-alive connections.

    with SyncDecider(lambda: build_decider(settings)) as decider:
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(decider.decide_batch, batches))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from .engine import Decider
from .models import Article, Outcome

__all__ = ["SyncDecider"]

T = TypeVar("T")


class SyncDecider:
    """Blocking facade over a Decider living on its own event-loop thread."""

    def __init__(self, factory: Callable[[], Decider], *, name: str = "llm-decide-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._closed = False
        self._lock = threading.Lock()

        async def create() -> Decider:
            return factory()

        # Built inside the loop so the session and semaphores belong to it.
        self.decider: Decider = self._submit(create()).result()

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def run(self, call: Callable[[Decider], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``call(decider)`` on the loop thread and wait for its result."""
        if self._closed:
            raise RuntimeError("this SyncDecider is closed")
        if threading.current_thread() is self._thread:
            raise RuntimeError("SyncDecider.run() called from its own loop thread; await instead")

        async def invoke() -> T:
            return await call(self.decider)

        return self._submit(invoke()).result(timeout)

    def decide(self, article: Article) -> Outcome:
        return self.run(lambda d: d.decide(article))

    def decide_batch(self, articles: Sequence[Article]) -> list[Outcome]:
        return self.run(lambda d: d.decide_batch(articles))

    def close(self) -> None:
        """Close the Decider (session, cache) and stop the loop thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._submit(self.decider.aclose()).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()

    def __enter__(self) -> SyncDecider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
