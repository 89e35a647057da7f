"""Exact Prometheus counter values for scripted emulator scenarios."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from llm_decide.backends import HTTPOptions, OllamaBackend
from llm_decide.cache import MemoryCache
from llm_decide.engine import Decider
from llm_decide.metrics import Events, PrometheusMetrics
from llm_decide.resilience import RetryPolicy


def instrumented(url: str, registry: CollectorRegistry, **kwargs) -> Decider:
    http = kwargs.pop("http", None)
    backend = OllamaBackend(base_url=url, model="llama3.2:3b", http=http)
    events = Events(metrics=PrometheusMetrics(registry))
    retry = kwargs.pop("retry", RetryPolicy(retries=3, base=0.001, cap=0.01))
    return Decider(backend, events=events, retry=retry, **kwargs)


async def test_fallback_retry_and_cache_counters_are_exact(make_emulator, articles) -> None:
    registry = CollectorRegistry()
    async with make_emulator() as (emu, url):
        decider = instrumented(url, registry, cache=MemoryCache())
        async with decider:
            emu.config.faults.add_script(["drop_item", "none", "error_500"])
            await decider.decide_batch(articles[:3])  # batch drops one -> 1 single fallback
            await decider.decide_batch(articles[3:6])  # first attempt 500, retried
            await decider.decide_batch(articles[:6])  # all six from the cache

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    endpoint = url
    assert value("llm_decide_requests_total", endpoint=endpoint, kind="batch", outcome="ok") == 2
    assert value("llm_decide_requests_total", endpoint=endpoint, kind="single", outcome="ok") == 1
    assert (
        value(
            "llm_decide_requests_total",
            endpoint=endpoint,
            kind="batch",
            outcome="backend_http_error",
        )
        == 1
    )
    assert value("llm_decide_retries_total", reason="backend_http_error") == 1
    assert value("llm_decide_fallbacks_total", reason="missing") == 1
    assert value("llm_decide_cache_lookups_total", result="hit") == 6
    assert value("llm_decide_cache_lookups_total", result="miss") == 6
    assert value("llm_decide_decisions_total", source="cache") == 6
    assert value("llm_decide_decisions_total", source="batch") == 5
    assert value("llm_decide_decisions_total", source="single") == 1
    assert value("llm_decide_batch_items_count") == 2  # two batches formed (one retried)
    assert value("llm_decide_request_duration_seconds_count", endpoint=endpoint, kind="batch") == 3
    assert value("llm_decide_inflight_requests", endpoint=endpoint) == 0
    assert value("llm_decide_concurrency_limit", endpoint=endpoint) == 4
    assert value("llm_decide_pool_connections", state="limit") == 100
    tokens = value("llm_decide_tokens_total", type="prompt")
    assert tokens == decider.stats.prompt_tokens and tokens > 0
    assert value("llm_decide_tokens_total", type="completion") == decider.stats.completion_tokens
    assert emu.stats.chat_requests == 4


async def test_timeouts_and_error_records_are_counted(make_emulator, articles) -> None:
    registry = CollectorRegistry()
    async with make_emulator(base_latency=1.0) as (_, url):
        decider = instrumented(
            url,
            registry,
            http=HTTPOptions(total_timeout=0.1),
            retry=RetryPolicy(retries=1, base=0.001),
        )
        async with decider:
            outcome = await decider.decide(articles[0])
    assert outcome.error.type == "backend_timeout"  # type: ignore[union-attr]
    assert registry.get_sample_value("llm_decide_timeouts_total") == 2
    assert registry.get_sample_value("llm_decide_errors_total", {"type": "backend_timeout"}) == 1
    assert registry.get_sample_value("llm_decide_retries_total", {"reason": "backend_timeout"}) == 1


async def test_log_events_carry_ids_and_counts_but_no_text(make_emulator, articles, caplog) -> None:
    caplog.set_level(logging.INFO, logger="llm_decide")
    async with make_emulator() as (emu, url):
        async with instrumented(url, CollectorRegistry()) as decider:
            emu.config.faults.add_script(["drop_item"])
            await decider.decide_batch(articles[:3])
    events = {r.event: r for r in caplog.records if hasattr(r, "event")}  # type: ignore[attr-defined]
    assert events["batch_call"].ids == [a.id for a in articles[:3]]  # type: ignore[attr-defined]
    assert events["batch_result"].count == 2  # type: ignore[attr-defined]
    assert list(events["batch_fallback"].reasons.values()) == ["missing"]  # type: ignore[attr-defined]
    logged = " ".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert all(a.text[:40] not in logged for a in articles[:3])
