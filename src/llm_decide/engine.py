"""The Decider: cache -> batch of N -> one request -> validate -> per-item fallback -> cache.

    async with Decider(OllamaBackend(base_url=url, model="llama3.2:3b")) as decider:
        outcome = await decider.decide(Article(id="1", text="..."))
        outcomes = await decider.decide_batch(articles)          # same order as given
        async for article, outcome in decider.decide_stream(rows):  # as they complete
            ...

Every article given ends as exactly one Outcome: a ``Decision`` or an
``ErrorRecord``. Only ``ModelNotFound`` (the whole run cannot work) is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

from .backends.base import ChatBackend, ChatResult
from .cache.base import DEFAULT_TTL_SECONDS, CachedDecision, DecisionCache, cache_key
from .cache.guard import GuardedCache
from .errors import CircuitOpen, InvalidAnswer, LLMDecideError, ModelNotFound, ServerBusy
from .metrics import Events, RunStats
from .models import Article, Decision, ErrorRecord, Outcome, Source
from .resilience import AdaptiveLimiter, CircuitBreaker, RetryPolicy, call_with_retries
from .sources import StreamItem, iter_chunks
from .task import DEFAULT_TASK, DecisionTask, ParsedDecision

__all__ = ["DEFAULT_MAX_CHARS", "Decider"]

#: Characters of one article shown to the model; the rest is cut (with a mark).
DEFAULT_MAX_CHARS = 4000
_FATAL = (ModelNotFound,)
#: Recent valid decisions kept for single-flight; well above the read-ahead (2,048).
SETTLED_MEMORY = 10_000


class Decider:
    """Decides articles with one backend, one task, and an optional cache.

    The Decider owns what it is given: ``aclose()`` (or leaving ``async with``)
    closes the backend's session and the cache.
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        task: DecisionTask = DEFAULT_TASK,
        cache: DecisionCache | None = None,
        batch_size: int = 3,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        cache_ttl: float = DEFAULT_TTL_SECONDS,
        events: Events | None = None,
        breaker: CircuitBreaker | None = None,
        breaker_max_wait: float = 60.0,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.backend = backend
        self.task = task
        self.events = events or Events()
        self.events.bind(backend, concurrency)
        #: The cache as given; lookups go through a guard that survives its failures.
        self.cache = cache
        self._cache = GuardedCache(cache, self.events) if cache is not None else None
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.max_chars = max_chars
        self.cache_ttl = cache_ttl
        self._rng = random.Random(seed)
        self._sleep = sleep
        self.limiter = AdaptiveLimiter(concurrency, on_change=self.events.concurrency_changed)
        self.breaker = breaker or CircuitBreaker()
        self.breaker.on_change = self.events.circuit_changed
        self.breaker_max_wait = breaker_max_wait
        self._streams: set[asyncio.Task[None]] = set()
        # Single-flight: content key -> the outcome of the one request deciding it,
        # and the latest valid decisions (a twin looked up in the cache just before
        # its original was stored still finds it here).
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        self._settled: OrderedDict[str, Decision] = OrderedDict()
        self._model = backend.model
        self._label_set = frozenset(task.label_names)
        options = getattr(backend, "options", {})
        self.fingerprint = task.fingerprint(options, max_chars)

    @property
    def model(self) -> str:
        return self._model

    @property
    def stats(self) -> RunStats:
        return self.events.stats

    async def __aenter__(self) -> Decider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        # A stream left unfinished (the consumer broke out of its loop) stops here,
        # before the session it uses goes away.
        for runner in list(self._streams):
            runner.cancel()
        if self._streams:
            await asyncio.gather(*self._streams, return_exceptions=True)
        try:
            await self.backend.aclose()
        finally:
            if self._cache is not None:
                await self._cache.aclose()

    def key_for(self, article: Article) -> str:
        return cache_key(self.fingerprint, self.model, article.digest)

    # -- public API -----------------------------------------------------------

    async def decide(self, article: Article) -> Outcome:
        """One article, one request (after a cache lookup)."""
        return (await self.decide_batch([article]))[0]

    async def decide_batch(self, articles: Sequence[Article]) -> list[Outcome]:
        """Outcomes in the order given; misses go ``batch_size`` per request, concurrently.

        An article identical to one already being decided (here or in another
        call) waits for that decision instead of asking again.
        """
        keys = [self.key_for(article) for article in articles]
        hits = await self._lookup(articles, keys)
        owned: list[int] = []
        shared: dict[int, Awaitable[Outcome]] = {}
        for position, (article, key) in enumerate(zip(articles, keys, strict=True)):
            if position in hits:
                continue
            waiting = self._claim(key)
            if waiting is None:
                owned.append(position)
            else:
                shared[position] = self._share(article, key, waiting)
        groups = [owned[i : i + self.batch_size] for i in range(0, len(owned), self.batch_size)]
        decided, shared_outcomes = await asyncio.gather(
            asyncio.gather(
                *(
                    self._decide_owned([articles[i] for i in group], [keys[i] for i in group])
                    for group in groups
                )
            ),
            asyncio.gather(*shared.values()),
        )
        results: dict[int, Outcome] = dict(hits)
        for group, outcomes in zip(groups, decided, strict=True):
            results.update(zip(group, outcomes, strict=True))
        results.update(zip(shared, shared_outcomes, strict=True))
        ordered = [results[i] for i in range(len(articles))]
        self.events.outcomes(list(zip(articles, ordered, strict=True)))
        return ordered

    async def decide_stream(
        self, items: Iterable[StreamItem] | AsyncIterable[StreamItem]
    ) -> AsyncIterator[tuple[Article | None, Outcome]]:
        """Decide a (possibly endless) stream with bounded memory; yields as they complete.

        ``items`` are Articles, or ErrorRecords for input that could not be read
        (they pass straight through, paired with None). At most ``concurrency``
        requests are in flight; batches form from the stream in arrival order,
        and a partial batch is sent as soon as the input stalls.
        """
        async for pairs in self.decide_stream_chunks(items):
            for pair in pairs:
                yield pair

    async def decide_stream_chunks(
        self, items: Iterable[StreamItem] | AsyncIterable[StreamItem]
    ) -> AsyncIterator[list[tuple[Article | None, Outcome]]]:
        """``decide_stream`` yielding lists (a batch, a chunk's cache hits): less overhead."""
        # Unbounded queue, bounded by `room`: the end marker can then always be put,
        # after every result already produced, even when the run fails.
        results: asyncio.Queue[list[tuple[Article | None, Outcome]] | None] = asyncio.Queue()
        room = asyncio.Semaphore(4 * self.concurrency + 8)

        async def emit(pairs: list[tuple[Article | None, Outcome]]) -> None:
            if pairs:
                await room.acquire()
                results.put_nowait(pairs)

        runner = asyncio.create_task(self._run_stream(items, emit))
        self._streams.add(runner)
        runner.add_done_callback(self._streams.discard)
        runner.add_done_callback(lambda _: results.put_nowait(None))
        try:
            while (pairs := await results.get()) is not None:
                room.release()
                self.events.outcomes(pairs)
                yield pairs
            await runner  # re-raises a fatal error (e.g. ModelNotFound)
        finally:
            if not runner.done():
                runner.cancel()
                # We cancelled it ourselves: the consumer stopped early.
                with contextlib.suppress(asyncio.CancelledError):
                    await runner

    # -- the stream pipeline --------------------------------------------------

    async def _run_stream(
        self,
        items: Iterable[StreamItem] | AsyncIterable[StreamItem],
        emit: Callable[[list[tuple[Article | None, Outcome]]], Awaitable[None]],
    ) -> None:
        work: asyncio.Queue[list[tuple[Article, str]] | None] = asyncio.Queue(
            maxsize=self.concurrency
        )

        async def worker() -> None:
            while (batch := await work.get()) is not None:
                articles = [article for article, _ in batch]
                outcomes = await self._decide_owned(articles, [key for _, key in batch])
                await emit(list(zip(articles, outcomes, strict=True)))

        async def wait_for_twin(article: Article, key: str, twin: asyncio.Future[Outcome]) -> None:
            await emit([(article, await self._share(article, key, twin))])

        async def produce(group: asyncio.TaskGroup) -> None:
            pending: list[tuple[Article, str]] = []
            async for chunk, stalled in iter_chunks(items):
                articles: list[Article] = []
                ready: list[tuple[Article | None, Outcome]] = []
                for item in chunk:
                    if isinstance(item, ErrorRecord):
                        ready.append((None, item))
                    else:
                        articles.append(item)
                keys = [self.key_for(article) for article in articles]
                hits = await self._lookup(articles, keys)
                ready.extend((articles[position], hit) for position, hit in hits.items())
                await emit(ready)
                for position, (article, key) in enumerate(zip(articles, keys, strict=True)):
                    if position in hits:
                        continue
                    twin = self._claim(key)
                    if twin is not None:
                        group.create_task(wait_for_twin(article, key, twin))
                        continue
                    pending.append((article, key))
                    if len(pending) == self.batch_size:
                        await work.put(pending)
                        pending = []
                if pending and stalled:
                    await work.put(pending)
                    pending = []
            if pending:
                await work.put(pending)
            for _ in range(self.concurrency):
                await work.put(None)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(produce(group))
                for _ in range(self.concurrency):
                    group.create_task(worker())
        except* _FATAL as fatal_group:
            raise fatal_group.exceptions[0] from None

    # -- single-flight ----------------------------------------------------------

    def _claim(self, key: str) -> asyncio.Future[Outcome] | None:
        """None: the caller now decides ``key``; else the future of whoever already does."""
        twin = self._inflight.get(key)
        if twin is not None:
            return twin
        loop = asyncio.get_running_loop()
        settled = self._settled.get(key)
        if settled is not None:
            done: asyncio.Future[Outcome] = loop.create_future()
            done.set_result(settled)
            return done
        self._inflight[key] = loop.create_future()
        return None

    async def _share(self, article: Article, key: str, twin: asyncio.Future[Outcome]) -> Outcome:
        """The twin's outcome under this article's id (asked anew if the twin was abandoned)."""
        try:
            outcome = await asyncio.shield(twin)
        except asyncio.CancelledError:
            if not twin.cancelled():
                raise  # we were cancelled ourselves
            if self._claim(key) is None:
                return (await self._decide_owned([article], [key]))[0]
            return await self._share(article, key, self._inflight[key])
        self.events.deduplicated(article.id)
        if isinstance(outcome, Decision):
            return outcome.model_copy(update={"id": article.id, "source": "cache"})
        return outcome.model_copy(update={"id": article.id})

    async def _decide_owned(self, batch: Sequence[Article], keys: Sequence[str]) -> list[Outcome]:
        """Decide claimed articles, cache the valid decisions, and release their twins."""
        try:
            outcomes = await self._decide_misses(batch)
        except BaseException as exc:
            for key in keys:
                twin = self._inflight.pop(key, None)
                if twin is not None and not twin.done():
                    if isinstance(exc, asyncio.CancelledError):
                        twin.cancel()
                    else:
                        twin.set_exception(exc)
                        twin.exception()  # retrieved here; twins re-raise it themselves
            raise
        if self._cache is not None:
            valid: dict[str, CachedDecision] = {
                key: {"label": o.label, "confidence": o.confidence, "reason": o.reason}
                for key, o in zip(keys, outcomes, strict=True)
                if isinstance(o, Decision)
            }
            if valid:
                await self._cache.set_many(valid, self.cache_ttl)
        for key, outcome in zip(keys, outcomes, strict=True):
            twin = self._inflight.pop(key, None)
            if twin is not None and not twin.done():
                twin.set_result(outcome)
            if isinstance(outcome, Decision):
                self._settled[key] = outcome
                if len(self._settled) > SETTLED_MEMORY:
                    self._settled.popitem(last=False)
        return outcomes

    # -- deciding misses ------------------------------------------------------

    async def _decide_misses(self, batch: Sequence[Article]) -> list[Outcome]:
        """One batch request; only missing or invalid items fall back to single requests."""
        if len(batch) == 1:
            return [await self._decide_single(batch[0])]
        ids = _prompt_ids(batch)
        self.events.batch_call(ids)
        messages = self.task.batch_messages(batch, self.max_chars, ids)
        try:
            result = await self._request("batch", messages, self.task.batch_schema(ids))
        except _FATAL:
            raise
        except LLMDecideError as exc:
            failures = dict.fromkeys(ids, f"batch request failed: {exc}")
            codes = dict.fromkeys(ids, "request_failed")
            parsed_decisions = {}
        else:
            parsed = self.task.parse_batch(result.content, ids)
            failures, parsed_decisions, codes = parsed.failures, parsed.decisions, parsed.codes
        self.events.batch_result(len(parsed_decisions), len(failures), len(batch))

        outcomes: dict[str, Outcome] = {}
        for prompt_id, article in zip(ids, batch, strict=True):
            item = parsed_decisions.get(prompt_id)
            if item is None:
                continue
            outcomes[prompt_id] = self._decision(article, item, "batch")
        if failures:
            self.events.batch_fallback(failures, codes)
            retried = [(pid, a) for pid, a in zip(ids, batch, strict=True) if pid in failures]
            singles = await asyncio.gather(*(self._decide_single(a) for _, a in retried))
            outcomes.update((pid, o) for (pid, _), o in zip(retried, singles, strict=True))
        return [outcomes[pid] for pid in ids]

    async def _decide_single(self, article: Article) -> Outcome:
        """One request for one article; an invalid answer is asked again once."""
        messages = self.task.single_messages(article, self.max_chars)
        schema = self.task.single_schema()
        raw_answer: str | None = None
        try:
            result = await self._request("single", messages, schema)
            raw_answer = result.content
            try:
                parsed = self.task.parse_single(result.content)
            except InvalidAnswer as exc:
                self.events.reask(article.id, str(exc))
                messages = self.task.reask_messages(messages, result.content, str(exc))
                result = await self._request("single", messages, schema)
                raw_answer = result.content
                parsed = self.task.parse_single(result.content)
        except _FATAL:
            raise
        except InvalidAnswer as exc:
            return ErrorRecord.from_exception(article.id, self.model, exc, raw_answer=raw_answer)
        except LLMDecideError as exc:
            return ErrorRecord.from_exception(article.id, self.model, exc)
        return self._decision(article, parsed, "single")

    def _decision(self, article: Article, parsed: ParsedDecision, source: Source) -> Decision:
        return Decision(
            id=article.id,
            label=parsed.label,
            confidence=parsed.confidence,
            reason=parsed.reason,
            source=source,
            model=self._model,
        )

    async def _request(
        self, kind: str, messages: list[dict[str, str]], schema: dict[str, Any]
    ) -> ChatResult:
        """One logical request: through the circuit breaker and the adaptive limit, retried.

        While the circuit is open the request waits (up to ``breaker_max_wait``
        in all) instead of failing; a failed probe sends it back to waiting
        without spending one of its retries, so an outage shorter than the
        wait loses nothing.
        """
        deadline: float | None = None

        async def attempt() -> ChatResult:
            nonlocal deadline
            while True:
                loop_time = asyncio.get_running_loop().time
                if deadline is None:
                    deadline = loop_time() + self.breaker_max_wait
                probe = await self._wait_for_breaker(deadline, loop_time)
                try:
                    return await self._send(kind, messages, schema)
                except LLMDecideError as exc:
                    if probe and exc.transient and not isinstance(exc, ServerBusy):
                        continue  # still down: the breaker is open again, wait for it
                    raise

        return await call_with_retries(
            attempt, self.retry, rng=self._rng, sleep=self._sleep, on_retry=self.events.retry
        )

    async def _send(
        self, kind: str, messages: list[dict[str, str]], schema: dict[str, Any]
    ) -> ChatResult:
        """One HTTP attempt inside the concurrency limit, with all its accounting."""
        limiter, breaker = self.limiter, self.breaker
        async with limiter:
            started = time.perf_counter()
            self.events.request_started()
            try:
                result = await self.backend.chat(messages, schema=schema)
            except ServerBusy as exc:
                # "Slow down", not "down": fewer requests in flight, no breaker strike.
                limiter.on_busy()
                breaker.release_probe()
                self.events.request_failed(kind, exc, time.perf_counter() - started)
                raise
            except LLMDecideError as exc:
                if exc.transient:
                    breaker.record_failure()
                else:
                    breaker.release_probe()
                self.events.request_failed(kind, exc, time.perf_counter() - started)
                raise
            except BaseException:
                breaker.release_probe()
                raise
            finally:
                self.events.request_finished()
        breaker.record_success()
        limiter.on_success()
        self.events.request_done(kind, result)
        return result

    async def _wait_for_breaker(self, deadline: float, now: Callable[[], float]) -> bool:
        """Wait while the circuit is open; True if this request goes as the probe."""
        while (wait := self.breaker.wait_time()) > 0:
            remaining = deadline - now()
            if remaining <= 0:
                raise CircuitOpen(
                    f"{self.backend.endpoint} kept failing; gave up after waiting "
                    f"{self.breaker_max_wait:.0f}s for it to recover",
                    url=self.backend.endpoint,
                )
            await self._sleep(min(wait, remaining))
        return self.breaker.state == "half_open"

    async def _lookup(self, articles: Sequence[Article], keys: Sequence[str]) -> dict[int, Outcome]:
        """Cache hits by position in ``articles``."""
        if self._cache is None or not articles:
            return {}
        found = await self._cache.get_many(keys)
        self.events.cache_lookup(len(found), len(keys) - len(found))
        hits: dict[int, Outcome] = {}
        labels = self._label_set
        for position, (article, key) in enumerate(zip(articles, keys, strict=True)):
            cached = found.get(key)
            if cached is None:
                continue
            if not _valid_cached(cached, labels):
                self.events.cache_entry_rejected(key)
                continue  # treated as a miss: decided again and overwritten
            # (pydantic's validating constructor is faster than model_construct here)
            hits[position] = Decision(
                id=article.id,
                label=cached["label"],
                confidence=float(cached["confidence"]),
                reason=cached["reason"],
                source="cache",
                model=self._model,
            )
        return hits


def _valid_cached(entry: object, labels: frozenset[str]) -> bool:
    """A cache entry we can serve: a known label, a confidence in 0..1, a reason."""
    if not isinstance(entry, dict):
        return False
    confidence = entry.get("confidence")
    return (
        entry.get("label") in labels
        and isinstance(confidence, int | float)
        and not isinstance(confidence, bool)
        and 0.0 <= confidence <= 1.0
        and isinstance(entry.get("reason"), str)
    )


def _prompt_ids(batch: Sequence[Article]) -> list[str]:
    """The articles' own ids, or positions when they would be ambiguous in one prompt."""
    ids = [article.id for article in batch]
    if len(set(ids)) == len(ids) and all(ids):
        return ids
    return [str(position + 1) for position in range(len(batch))]
