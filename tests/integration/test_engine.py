"""The engine against the emulator over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from llm_decide.backends import HTTPOptions, OllamaBackend
from llm_decide.cache import MemoryCache
from llm_decide.emulator.answers import choose_label
from llm_decide.engine import Decider
from llm_decide.errors import ModelNotFound
from llm_decide.models import Article, Decision, ErrorRecord
from llm_decide.resilience import CircuitBreaker, RetryPolicy
from llm_decide.task import DEFAULT_TASK

LABELS = DEFAULT_TASK.label_names
NO_WAIT = RetryPolicy(retries=3, base=0.001, cap=0.01)


def expected(article: Article) -> str:
    return choose_label(article.prompt_text, LABELS)[0]


def decider_for(url: str, **kwargs) -> Decider:
    http = kwargs.pop("http", None)
    model = kwargs.pop("model", "llama3.2:3b")
    kwargs.setdefault("retry", NO_WAIT)
    return Decider(OllamaBackend(base_url=url, model=model, http=http), **kwargs)


async def test_shuffled_batch_answers_land_on_the_right_article(make_emulator, articles) -> None:
    async with make_emulator(slots=4, shuffle=True) as (emu, url), decider_for(url) as decider:
        outcomes = await decider.decide_batch(articles[:30])
    assert [o.id for o in outcomes] == [a.id for a in articles[:30]]
    assert all(isinstance(o, Decision) and o.source == "batch" for o in outcomes)
    assert [o.label for o in outcomes] == [expected(a) for a in articles[:30]]  # type: ignore[union-attr]
    assert emu.stats.batch_requests == 10 and emu.stats.single_requests == 0


async def test_a_dropped_item_falls_back_alone(make_emulator, articles) -> None:
    async with make_emulator() as (emu, url), decider_for(url) as decider:
        emu.config.faults.add_script(["drop_item"])
        outcomes = await decider.decide_batch(articles[:3])
    sources = [o.source for o in outcomes if isinstance(o, Decision)]
    assert sorted(sources) == ["batch", "batch", "single"]
    assert [o.label for o in outcomes] == [expected(a) for a in articles[:3]]  # type: ignore[union-attr]
    assert emu.stats.single_requests == 1
    assert decider.stats.fallbacks == 1


@pytest.mark.parametrize("fault", ["duplicate_id", "bad_label", "unknown_id"])
async def test_a_bad_item_falls_back_alone(make_emulator, articles, fault: str) -> None:
    async with make_emulator() as (emu, url), decider_for(url) as decider:
        emu.config.faults.add_script([fault])
        outcomes = await decider.decide_batch(articles[:3])
    assert [o.label for o in outcomes] == [expected(a) for a in articles[:3]]  # type: ignore[union-attr]
    assert emu.stats.single_requests == 1 and decider.stats.fallbacks == 1


async def test_invalid_json_is_asked_again_once(make_emulator, articles) -> None:
    async with make_emulator() as (emu, url), decider_for(url) as decider:
        emu.config.faults.add_script(["invalid_json"])
        outcome = await decider.decide(articles[0])
    assert isinstance(outcome, Decision) and outcome.label == expected(articles[0])
    assert emu.stats.single_requests == 2 and decider.stats.reasks == 1


async def test_twice_invalid_becomes_an_error_record_with_the_raw_answer(
    make_emulator, articles
) -> None:
    async with make_emulator() as (emu, url), decider_for(url) as decider:
        emu.config.faults.add_script(["truncated_json", "bad_label"])
        outcome = await decider.decide(articles[0])
    assert isinstance(outcome, ErrorRecord) and outcome.error.type == "invalid_answer"
    assert "Not-A-Label" in (outcome.raw_answer or "")


async def test_whole_batch_garbage_falls_back_for_every_item(make_emulator, articles) -> None:
    async with make_emulator() as (emu, url), decider_for(url) as decider:
        emu.config.faults.add_script(["invalid_json"])
        outcomes = await decider.decide_batch(articles[:3])
    assert [o.source for o in outcomes] == ["single"] * 3  # type: ignore[union-attr]
    assert decider.stats.fallbacks == 3


async def test_unknown_model_raises_model_not_found(emulator, articles) -> None:
    _, url = emulator
    async with decider_for(url, model="no-such-model:1b") as decider:
        with pytest.raises(ModelNotFound, match="ollama pull no-such-model:1b"):
            await decider.decide(articles[0])
        with pytest.raises(ModelNotFound):
            async for _ in decider.decide_stream(articles[:10]):
                pass


async def test_short_timeout_against_a_slow_server_gives_backend_timeout(
    make_emulator, articles
) -> None:
    async with make_emulator(base_latency=2.0) as (emu, url):
        decider = decider_for(
            url, http=HTTPOptions(total_timeout=0.2), retry=RetryPolicy(retries=1, base=0.001)
        )
        async with decider:
            outcome = await decider.decide(articles[0])
    assert isinstance(outcome, ErrorRecord) and outcome.error.type == "backend_timeout"
    assert decider.stats.timeouts == 2 and decider.stats.retries["backend_timeout"] == 1
    assert emu.stats.single_requests == 2


async def test_transient_errors_are_retried_and_counted(make_emulator, articles) -> None:
    async with make_emulator() as (emu, url), decider_for(url) as decider:
        emu.config.faults.add_script(["error_500", "busy_503", "reset"])
        outcomes = await decider.decide_batch(articles[:3])
    assert all(isinstance(o, Decision) and o.source == "batch" for o in outcomes)
    assert dict(decider.stats.retries) == {
        "backend_http_error": 1,
        "server_busy": 1,
        "backend_unavailable": 1,
    }
    assert emu.stats.batch_requests == 4


async def test_exhausted_retries_end_as_error_records(make_emulator, articles) -> None:
    async with make_emulator() as (emu, url):
        emu.config.faults.rates["error_500"] = 1.0
        never_open = CircuitBreaker(failure_threshold=1000)
        async with decider_for(
            url, retry=RetryPolicy(retries=2, base=0.001), breaker=never_open
        ) as decider:
            outcomes = await decider.decide_batch(articles[:3])
    assert [o.error.type for o in outcomes] == ["backend_http_error"] * 3  # type: ignore[union-attr]
    # one batch and three singles, each tried three times
    assert emu.stats.chat_requests == 4 * 3


async def test_cache_serves_repeats_and_stores_only_valid_decisions(emulator, articles) -> None:
    emu, url = emulator
    cache = MemoryCache()
    async with decider_for(url, cache=cache) as decider:
        emu.config.faults.add_script(["truncated_json", "truncated_json"])
        first = await decider.decide(articles[0])  # invalid twice: an error, not cached
        assert isinstance(first, ErrorRecord)
        batch = await decider.decide_batch(articles[:4])
        again = await decider.decide_batch(articles[:4])
        assert len(cache) == 4
    assert [o.source for o in batch] == ["batch", "batch", "batch", "single"]  # type: ignore[union-attr]
    assert [o.source for o in again] == ["cache"] * 4  # type: ignore[union-attr]
    assert [o.label for o in again] == [o.label for o in batch]  # type: ignore[union-attr]
    assert decider.stats.cache_hits == 4 and decider.stats.cache_misses == 5


async def test_stream_keeps_concurrency_requests_in_flight_and_no_more(
    make_emulator, articles
) -> None:
    async with make_emulator(slots=16, base_latency=0.05, shuffle=True) as (emu, url):
        async with decider_for(url, concurrency=5) as decider:
            results = [pair async for pair in decider.decide_stream(articles[:150])]
    assert emu.stats.max_in_flight == 5
    assert sorted(a.id for a, _ in results) == sorted(a.id for a in articles[:150])
    assert all(o.label == expected(a) for a, o in results)  # type: ignore[union-attr]
    # each article asked once; nearly all in full batches (a stalled input may send a
    # partly filled one early)
    assert sorted(emu.stats.articles_seen.values()) == [1] * 150
    assert emu.stats.batch_requests >= 45


async def test_stream_passes_error_records_through(make_emulator, articles) -> None:
    broken = ErrorRecord.from_exception("bad-line", None, ValueError("unreadable"))
    async with make_emulator(slots=2) as (_emu, url), decider_for(url, concurrency=2) as decider:
        outcomes = [pair async for pair in decider.decide_stream([*articles[:10], broken])]
    assert len(outcomes) == 11
    assert [o for a, o in outcomes if a is None] == [broken]


async def test_stream_reads_lazily(make_emulator, articles) -> None:
    pulled = 0

    def source() -> Iterator[Article]:
        nonlocal pulled
        for n in range(100_000):
            pulled += 1
            yield articles[n % len(articles)]

    async with make_emulator(slots=2, base_latency=0.01) as (_emu, url):
        async with decider_for(url, concurrency=2) as decider:
            decided = 0
            async for _ in decider.decide_stream(source()):
                decided += 1
                if decided == 30:
                    break
    assert pulled < 10_000  # bounded read-ahead, not the whole input


async def test_stopping_a_stream_early_cancels_cleanly(make_emulator, articles) -> None:
    async with make_emulator(slots=4, base_latency=0.05) as (emu, url):
        async with decider_for(url, concurrency=4) as decider:
            async for _ in decider.decide_stream(articles):
                break
        await asyncio.sleep(0.1)
    assert emu.stats.chat_requests < len(articles) / 3


async def test_duplicate_ids_in_one_batch_still_map_by_position(emulator) -> None:
    _, url = emulator
    twins = [Article(id="same", text="Sports Sports"), Article(id="same", text="World news World")]
    async with decider_for(url) as decider:
        outcomes = await decider.decide_batch(twins)
    assert [o.label for o in outcomes] == ["Sports", "World"]  # type: ignore[union-attr]
