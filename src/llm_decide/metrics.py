"""Counters, Prometheus metrics and log events, in one place; the engine calls only these.

``Events`` keeps a ``RunStats`` (what the CLI summary and ``--report`` print),
updates the Prometheus metrics of a ``PrometheusMetrics`` (on a registry you
pass in; never only the global one), and writes the original design's log
events (batch call with ids, batch result with count, batch error with the
fallback taken, retries, cache outages) through ``logging`` with structured
``extra`` fields. Article text never reaches a log line.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # prometheus_client is imported when metrics are asked for, not before
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

from .backends.base import ChatResult
from .models import Decision, Outcome

__all__ = ["Events", "PrometheusMetrics", "RunStats", "logger", "percentile"]

logger = logging.getLogger("llm_decide")

#: Request durations from a fast cached server (10 ms) to the 300 s timeout.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _type_of(exc: BaseException) -> str:
    return str(getattr(exc, "type", type(exc).__name__))


@dataclass
class RunStats:
    """Everything counted during a run (one Decider)."""

    outcomes: int = 0
    decided: int = 0
    #: Articles decided or not that carry a warning (e.g. cut to --max-chars).
    warnings: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    cache_misses: int = 0
    #: Cache failures (the run carried on uncached) and decisions not stored because of them.
    cache_errors: int = 0
    cache_writes_skipped: int = 0
    #: Articles that waited for an identical article already in flight (single-flight).
    deduplicated: int = 0
    requests: Counter[str] = field(default_factory=Counter)  # by kind: batch / single
    request_failures: Counter[str] = field(default_factory=Counter)  # by error type
    retries: Counter[str] = field(default_factory=Counter)  # by reason
    fallbacks: int = 0
    fallback_reasons: Counter[str] = field(default_factory=Counter)
    reasks: int = 0
    timeouts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    request_seconds: list[float] = field(default_factory=list)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def cache_hit_ratio(self) -> float:
        lookups = self.cache_hits + self.cache_misses
        return self.cache_hits / lookups if lookups else 0.0

    def as_dict(self) -> dict[str, Any]:
        durations = self.request_seconds
        return {
            "articles": self.outcomes,
            "decided": self.decided,
            "warnings": self.warnings,
            "errors": dict(self.errors),
            "sources": dict(self.sources),
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_hit_ratio": round(self.cache_hit_ratio, 4),
            "cache_errors": self.cache_errors,
            "cache_writes_skipped": self.cache_writes_skipped,
            "deduplicated": self.deduplicated,
            "requests": dict(self.requests),
            "requests_total": self.total_requests,
            "request_failures": dict(self.request_failures),
            "retries": dict(self.retries),
            "fallbacks": self.fallbacks,
            "fallback_reasons": dict(self.fallback_reasons),
            "reasks": self.reasks,
            "timeouts": self.timeouts,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "request_seconds_avg": sum(durations) / len(durations) if durations else 0.0,
            "request_seconds_p50": percentile(durations, 50),
            "request_seconds_p95": percentile(durations, 95),
            "request_seconds_p99": percentile(durations, 99),
        }


PoolUsage = Callable[[], tuple[int, int, int]]


class _PoolCollector:
    """``llm_decide_pool_connections{state}`` read from the connector at scrape time."""

    def __init__(self) -> None:
        self.sources: list[PoolUsage] = []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "llm_decide_pool_connections",
            "HTTP connections of the client pool by state",
            labels=["state"],
        )
        in_use = idle = limit = 0
        for usage in self.sources:
            used, free, cap = usage()
            in_use, idle, limit = in_use + used, idle + free, limit + cap
        family.add_metric(["in_use"], in_use)
        family.add_metric(["idle"], idle)
        family.add_metric(["limit"], limit)
        yield family


class PrometheusMetrics:
    """The library's Prometheus metrics, registered on ``registry``.

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> metrics = PrometheusMetrics(registry)
    >>> registry.get_sample_value("llm_decide_timeouts_total")
    0.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter as PromCounter
        from prometheus_client import Gauge, Histogram

        self.registry = registry
        self.requests = PromCounter(
            "llm_decide_requests",
            "LLM requests by outcome (ok or error type)",
            ["endpoint", "kind", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "llm_decide_request_duration_seconds",
            "Wall time of one LLM request",
            ["endpoint", "kind"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.errors = PromCounter(
            "llm_decide_errors",
            "Articles that ended as error records, by type",
            ["type"],
            registry=registry,
        )
        self.timeouts = PromCounter(
            "llm_decide_timeouts", "LLM requests that timed out", registry=registry
        )
        self.retries = PromCounter(
            "llm_decide_retries",
            "Retries of transient failures by reason",
            ["reason"],
            registry=registry,
        )
        self.fallbacks = PromCounter(
            "llm_decide_fallbacks",
            "Batch items sent again as single requests, by reason",
            ["reason"],
            registry=registry,
        )
        self.cache_lookups = PromCounter(
            "llm_decide_cache_lookups",
            "Cache lookups by result (hit, miss, error)",
            ["result"],
            registry=registry,
        )
        self.inflight = Gauge(
            "llm_decide_inflight_requests",
            "LLM requests in flight",
            ["endpoint"],
            registry=registry,
        )
        self.tokens = PromCounter(
            "llm_decide_tokens",
            "Tokens reported by the server (prompt, completion)",
            ["type"],
            registry=registry,
        )
        self.batch_items = Histogram(
            "llm_decide_batch_items",
            "Articles per batch request",
            buckets=(1, 2, 3, 4, 5, 8, 10, 16, 20, 32, 50),
            registry=registry,
        )
        self.concurrency_limit = Gauge(
            "llm_decide_concurrency_limit",
            "Requests allowed in flight",
            ["endpoint"],
            registry=registry,
        )
        self.decisions = PromCounter(
            "llm_decide_decisions",
            "Decisions by source (cache, batch, single)",
            ["source"],
            registry=registry,
        )
        self.circuit_state = Gauge(
            "llm_decide_circuit_state",
            "Circuit breaker: 0 closed, 1 half open, 2 open",
            ["endpoint"],
            registry=registry,
        )
        self.pool = _PoolCollector()
        registry.register(self.pool)


class Events:
    """The engine's instrumentation: counts into ``stats``, Prometheus, and the log."""

    def __init__(
        self,
        stats: RunStats | None = None,
        log: logging.Logger = logger,
        *,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        self.stats = stats or RunStats()
        self.log = log
        self.metrics = metrics
        self.endpoint = ""

    def bind(self, backend: Any, concurrency: int) -> None:
        """Called by the Decider: which endpoint the metrics describe."""
        self.endpoint = str(getattr(backend, "endpoint", ""))
        if self.metrics is not None:
            self.metrics.concurrency_limit.labels(self.endpoint).set(concurrency)
            usage = getattr(backend, "pool_usage", None)
            if usage is not None:
                self.metrics.pool.sources.append(usage)

    def concurrency_changed(self, limit: int) -> None:
        if self.metrics is not None:
            self.metrics.concurrency_limit.labels(self.endpoint).set(limit)
        self.log.warning(
            "requests in flight now limited to %d",
            limit,
            extra={"event": "concurrency_limit", "limit": limit},
        )

    def circuit_changed(self, old: str, new: str) -> None:
        if self.metrics is not None:
            code = {"closed": 0, "half_open": 1, "open": 2}[new]
            self.metrics.circuit_state.labels(self.endpoint).set(code)
        self.log.warning(
            "circuit for %s: %s -> %s",
            self.endpoint,
            old,
            new,
            extra={"event": "circuit", "from": old, "to": new, "endpoint": self.endpoint},
        )

    # -- cache ---------------------------------------------------------------

    def cache_lookup(self, hits: int, misses: int) -> None:
        self.stats.cache_hits += hits
        self.stats.cache_misses += misses
        if self.metrics is not None:
            self.metrics.cache_lookups.labels("hit").inc(hits)
            self.metrics.cache_lookups.labels("miss").inc(misses)

    def cache_error(self, exc: BaseException, *, first_in_outage: bool) -> None:
        self.stats.cache_errors += 1
        if self.metrics is not None:
            self.metrics.cache_lookups.labels("error").inc()
        if first_in_outage:
            self.log.warning(
                "cache unavailable, carrying on without it (will retry): %s",
                exc,
                extra={"event": "cache_unavailable", "error": str(exc)},
            )

    def cache_recovered(self) -> None:
        self.log.warning("cache is available again", extra={"event": "cache_recovered"})

    def cache_entry_rejected(self, key: str) -> None:
        self.stats.cache_errors += 1
        self.log.warning(
            "ignoring a malformed cache entry", extra={"event": "cache_entry_rejected", "key": key}
        )

    def cache_write_skipped(self, count: int) -> None:
        self.stats.cache_writes_skipped += count

    def deduplicated(self, article_id: str) -> None:
        self.stats.deduplicated += 1
        self.log.debug(
            "identical article in flight, sharing its decision",
            extra={"event": "single_flight", "id": article_id},
        )

    # -- batches -------------------------------------------------------------

    def batch_call(self, ids: Sequence[str]) -> None:
        self.log.info("batch call", extra={"event": "batch_call", "ids": list(ids)})

    def batch_result(self, decided: int, failed: int, size: int) -> None:
        if self.metrics is not None:
            self.metrics.batch_items.observe(size)
        self.log.info(
            "batch result",
            extra={"event": "batch_result", "count": decided, "failed": failed},
        )

    def batch_fallback(self, failures: dict[str, str], codes: dict[str, str]) -> None:
        """Items of a batch that go to single requests, and why."""
        self.stats.fallbacks += len(failures)
        self.stats.fallback_reasons.update(codes.values())
        if self.metrics is not None:
            for code in codes.values():
                self.metrics.fallbacks.labels(code).inc()
        self.log.warning(
            "batch error, falling back to single requests for %d item(s)",
            len(failures),
            extra={"event": "batch_fallback", "ids": list(failures), "reasons": codes},
        )

    # -- requests ------------------------------------------------------------

    def request_started(self) -> None:
        if self.metrics is not None:
            self.metrics.inflight.labels(self.endpoint).inc()

    def request_finished(self) -> None:
        """Always paired with ``request_started`` (also on cancellation)."""
        if self.metrics is not None:
            self.metrics.inflight.labels(self.endpoint).dec()

    def request_done(self, kind: str, result: ChatResult) -> None:
        self.stats.requests[kind] += 1
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        self.stats.request_seconds.append(result.wall_s)
        if self.metrics is not None:
            m = self.metrics
            m.requests.labels(self.endpoint, kind, "ok").inc()
            m.duration.labels(self.endpoint, kind).observe(result.wall_s)
            m.tokens.labels("prompt").inc(result.prompt_tokens)
            m.tokens.labels("completion").inc(result.completion_tokens)

    def request_failed(self, kind: str, exc: BaseException, seconds: float) -> None:
        error_type = _type_of(exc)
        self.stats.requests[kind] += 1
        self.stats.request_failures[error_type] += 1
        self.stats.request_seconds.append(seconds)
        if error_type == "backend_timeout":
            self.stats.timeouts += 1
        if self.metrics is not None:
            m = self.metrics
            m.requests.labels(self.endpoint, kind, error_type).inc()
            m.duration.labels(self.endpoint, kind).observe(seconds)
            if error_type == "backend_timeout":
                m.timeouts.inc()

    def retry(self, exc: BaseException, retry_index: int, wait: float) -> None:
        reason = _type_of(exc)
        self.stats.retries[reason] += 1
        if self.metrics is not None:
            self.metrics.retries.labels(reason).inc()
        self.log.warning(
            "retrying after %s (retry %d, waiting %.2fs)",
            reason,
            retry_index + 1,
            wait,
            extra={"event": "retry", "reason": reason, "retry": retry_index + 1, "wait_s": wait},
        )

    def reask(self, article_id: str, error: str) -> None:
        self.stats.reasks += 1
        self.log.info(
            "invalid answer, asking again",
            extra={"event": "reask", "id": article_id, "error": error},
        )

    # -- outcomes ------------------------------------------------------------

    def outcomes(self, pairs: Sequence[tuple[Any, Outcome]]) -> None:
        """A chunk of outcomes, counted in bulk (one Prometheus update per label, not per item)."""
        sources: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        warnings = 0
        for article, outcome in pairs:
            if article is not None and article.warnings:
                warnings += 1
            if type(outcome) is Decision:
                sources[outcome.source] += 1
            else:
                errors[outcome.error.type] += 1  # type: ignore[union-attr]
        stats = self.stats
        stats.warnings += warnings
        stats.outcomes += len(pairs)
        stats.decided += sum(sources.values())
        stats.sources.update(sources)
        stats.errors.update(errors)
        if self.metrics is not None:
            for source, count in sources.items():
                self.metrics.decisions.labels(source).inc(count)
            for kind, count in errors.items():
                self.metrics.errors.labels(kind).inc(count)
