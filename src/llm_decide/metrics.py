"""Counters and log events, in one place; the engine calls these and nothing else.

``Events`` keeps a ``RunStats`` (what the CLI summary prints) and writes the
original design's log events (batch call with ids, batch result with count,
batch error with the fallback taken, retries) through ``logging`` with
structured ``extra`` fields. Article text never reaches a log line.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .backends.base import ChatResult
from .models import Decision, Outcome

__all__ = ["Events", "RunStats", "logger", "percentile"]

logger = logging.getLogger("llm_decide")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class RunStats:
    """Everything counted during a run (one Decider)."""

    outcomes: int = 0
    decided: int = 0
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
            "errors": dict(self.errors),
            "sources": dict(self.sources),
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_hit_ratio": round(self.cache_hit_ratio, 4),
            "cache_errors": self.cache_errors,
            "cache_writes_skipped": self.cache_writes_skipped,
            "deduplicated": self.deduplicated,
            "requests": dict(self.requests),
            "request_failures": dict(self.request_failures),
            "retries": dict(self.retries),
            "fallbacks": self.fallbacks,
            "reasks": self.reasks,
            "timeouts": self.timeouts,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "request_seconds_avg": sum(durations) / len(durations) if durations else 0.0,
            "request_seconds_p50": percentile(durations, 50),
            "request_seconds_p95": percentile(durations, 95),
            "request_seconds_p99": percentile(durations, 99),
        }


class Events:
    """The engine's instrumentation: counts into ``stats`` and logs the events."""

    def __init__(self, stats: RunStats | None = None, log: logging.Logger = logger) -> None:
        self.stats = stats or RunStats()
        self.log = log

    def cache_lookup(self, hits: int, misses: int) -> None:
        self.stats.cache_hits += hits
        self.stats.cache_misses += misses

    def cache_error(self, exc: BaseException, *, first_in_outage: bool) -> None:
        self.stats.cache_errors += 1
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

    def batch_call(self, ids: Sequence[str]) -> None:
        self.log.info("batch call", extra={"event": "batch_call", "ids": list(ids)})

    def batch_result(self, decided: int, failed: int) -> None:
        self.log.info(
            "batch result",
            extra={"event": "batch_result", "count": decided, "failed": failed},
        )

    def batch_fallback(self, failures: dict[str, str]) -> None:
        """Items of a batch that go to single requests, and why."""
        self.stats.fallbacks += len(failures)
        self.log.warning(
            "batch error, falling back to single requests",
            extra={"event": "batch_fallback", "ids": list(failures), "reasons": failures},
        )

    def request_done(self, kind: str, result: ChatResult) -> None:
        self.stats.requests[kind] += 1
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        self.stats.request_seconds.append(result.wall_s)

    def request_failed(self, kind: str, exc: BaseException, seconds: float) -> None:
        error_type = str(getattr(exc, "type", type(exc).__name__))
        self.stats.requests[kind] += 1
        self.stats.request_failures[error_type] += 1
        self.stats.request_seconds.append(seconds)
        if error_type == "backend_timeout":
            self.stats.timeouts += 1

    def retry(self, exc: BaseException, retry_index: int, wait: float) -> None:
        reason = str(getattr(exc, "type", type(exc).__name__))
        self.stats.retries[reason] += 1
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

    def outcomes(self, pairs: Sequence[tuple[object, Outcome]]) -> None:
        for _, outcome in pairs:
            self.outcome(outcome)

    def outcome(self, outcome: Outcome) -> None:
        self.stats.outcomes += 1
        if isinstance(outcome, Decision):
            self.stats.decided += 1
            self.stats.sources[outcome.source] += 1
        else:
            self.stats.errors[outcome.error.type] += 1
