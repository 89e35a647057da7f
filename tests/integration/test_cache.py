"""Caches against real Redis and real SQLite files, and the engine's use of them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import aiohttp
import pytest

from llm_decide import compat
from llm_decide.backends import OllamaBackend
from llm_decide.cache import MemoryCache, open_cache
from llm_decide.cache.redis import RedisCache
from llm_decide.cache.sqlite import SQLiteCache
from llm_decide.engine import Decider
from llm_decide.errors import CacheUnavailable, ConfigurationError
from llm_decide.models import Article
from llm_decide.resilience import RetryPolicy
from llm_decide.settings import Settings
from llm_decide.task import DEFAULT_TASK, DecisionTask, Label

VALUE = {"label": "World", "confidence": 0.5, "reason": "r"}
NO_WAIT = RetryPolicy(retries=1, base=0.001, cap=0.01)


def decider(url: str, cache, **kwargs) -> Decider:
    model = kwargs.pop("model", "llama3.2:3b")
    options = kwargs.pop("options", None)
    backend = OllamaBackend(base_url=url, model=model, options=options)
    return Decider(backend, cache=cache, retry=NO_WAIT, **kwargs)


# -- Redis ---------------------------------------------------------------------------


async def test_redis_round_trip_and_ttl_expiry(redis_server) -> None:
    cache = RedisCache(redis_server.url)
    try:
        await cache.set_many({"a": VALUE, "b": VALUE}, ttl=0.3)
        assert set(await cache.get_many(["a", "b", "c"])) == {"a", "b"}
        await asyncio.sleep(0.4)
        assert await cache.get_many(["a", "b"]) == {}
        await cache.set_many({"d": VALUE})
        ttl = int(redis_server.command("TTL", "d").strip().lstrip(":"))
        assert 172790 <= ttl <= 172800  # the 48 h default
    finally:
        await cache.aclose()


async def test_redis_lookups_are_chunked_mgets_and_writes_pipelined(redis_server) -> None:
    cache = RedisCache(redis_server.url, chunk_size=10)
    try:
        keys = [f"k{i}" for i in range(35)]
        await cache.set_many(dict.fromkeys(keys, VALUE))
        found = await cache.get_many(keys)
    finally:
        await cache.aclose()
    assert len(found) == 35
    stats = redis_server.command("INFO", "commandstats")
    assert "cmdstat_mget:calls=4," in stats
    assert "cmdstat_set:calls=35," in stats


async def test_redis_unreachable_is_cache_unavailable(redis_server) -> None:
    redis_server.stop()
    cache = RedisCache(redis_server.url, connect_timeout=0.5)
    try:
        with pytest.raises(CacheUnavailable, match=str(redis_server.port)):
            await cache.ping()
        with pytest.raises(CacheUnavailable):
            await cache.get_many(["x"])
    finally:
        await cache.aclose()


async def test_redis_restart_mid_run_loses_nothing_and_is_used_again(
    redis_server, make_emulator, articles
) -> None:
    cache = RedisCache(redis_server.url, connect_timeout=0.3, socket_timeout=0.5)
    async with make_emulator(slots=4, base_latency=0.02) as (_emu, url):
        engine = decider(url, cache, concurrency=4)
        engine._cache.retry_after = 0.05  # type: ignore[union-attr]
        async with engine:
            ids = []
            async for _article, outcome in engine.decide_stream(articles[:240]):
                ids.append(outcome.id)
                if len(ids) == 60:
                    redis_server.stop()
                if len(ids) == 120:
                    redis_server.start()
                    await asyncio.sleep(0.1)
            stats = engine.stats
    assert sorted(ids) == sorted(a.id for a in articles[:240])
    assert stats.decided == 240 and stats.cache_errors >= 1
    stored = int(redis_server.command("DBSIZE").strip().lstrip(":"))
    assert stored > 0  # decisions after the restart were cached again


# -- SQLite --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_sqlite_expired_entries_are_never_served_and_get_purged(tmp_path) -> None:
    clock = Clock()
    cache = SQLiteCache(tmp_path / "c.sqlite3", clock=clock)
    try:
        await cache.set_many({"a": VALUE}, ttl=10)
        await cache.set_many({"b": VALUE}, ttl=100)
        assert set(await cache.get_many(["a", "b"])) == {"a", "b"}  # from the write buffer
        await cache.flush()
        assert set(await cache.get_many(["a", "b"])) == {"a", "b"}  # from the file
        clock.now += 50
        assert set(await cache.get_many(["a", "b"])) == {"b"}
        assert await cache.purge_expired() == 1
    finally:
        await cache.aclose()


async def test_sqlite_persists_across_instances(tmp_path) -> None:
    path = tmp_path / "c.sqlite3"
    first = SQLiteCache(path)
    await first.set_many({f"k{i}": VALUE for i in range(2000)})
    await first.aclose()  # flushes the write buffer
    second = SQLiteCache(path)
    try:
        assert len(await second.get_many([f"k{i}" for i in range(2000)])) == 2000
    finally:
        await second.aclose()


def test_two_processes_share_one_sqlite_file(tmp_path) -> None:
    path = tmp_path / "shared.sqlite3"
    script = textwrap.dedent(
        """
        import asyncio, sys
        from llm_decide.cache.sqlite import SQLiteCache
        async def main(tag):
            cache = SQLiteCache(sys.argv[1], flush_delay=0.001)
            for round in range(20):
                await cache.set_many({f"{tag}-{round}-{i}": {"label": tag, "confidence": 1.0,
                                      "reason": ""} for i in range(50)})
                await cache.flush()
                await cache.get_many([f"{tag}-{round}-{i}" for i in range(50)])
            await cache.aclose()
        asyncio.run(main(sys.argv[2]))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), tag]) for tag in ("p1", "p2")
    ]
    assert [p.wait(60) for p in procs] == [0, 0]

    async def count() -> int:
        cache = SQLiteCache(path)
        try:
            keys = [f"{t}-{r}-{i}" for t in ("p1", "p2") for r in range(20) for i in range(50)]
            return len(await cache.get_many(keys))
        finally:
            await cache.aclose()

    assert asyncio.run(count()) == 2000


def test_corrupt_sqlite_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "broken.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigurationError, match=r"broken\.sqlite3"):
        SQLiteCache(path)


def test_cache_specs() -> None:
    assert open_cache("none") is None
    assert isinstance(open_cache("memory"), MemoryCache)
    with pytest.raises(ConfigurationError, match="unknown cache"):
        open_cache("memcached://x")


# -- keys, single-flight, the original flow --------------------------------------------


async def test_key_rules_changed_task_model_or_options_miss_whitespace_hits(
    make_emulator,
) -> None:
    cache = MemoryCache()
    article = Article(id="a", title="Cup  final", text="Sports\nnews")
    spaced = Article(id="b", title=" Cup final ", text="Sports   news ")
    relabelled = DecisionTask(
        DEFAULT_TASK.name,
        DEFAULT_TASK.version,
        DEFAULT_TASK.instructions,
        (Label("World", "elsewhere"), *DEFAULT_TASK.labels[1:]),
    )
    async with make_emulator(models=("llama3.2:3b", "qwen2.5:3b")) as (emu, url):
        variants = [
            {},
            {"task": relabelled},
            {"model": "qwen2.5:3b"},
            {"options": {"temperature": 0.7}},
            {"max_chars": 1000},
        ]
        for kwargs in variants:
            async with decider(url, cache, **kwargs) as engine:
                outcome = await engine.decide(article)
            assert outcome.source == "single", kwargs  # type: ignore[union-attr]
        async with decider(url, cache) as engine:
            again = await engine.decide(spaced)
    assert again.source == "cache"  # type: ignore[union-attr]
    assert emu.stats.chat_requests == len(variants)


async def test_identical_articles_in_one_run_cost_one_decision(make_emulator, articles) -> None:
    base = articles[:30]
    twins = [Article(id=f"{a.id}-twin", title=a.title, text=a.text) for a in base]
    async with make_emulator(slots=4, base_latency=0.05) as (emu, url):
        async with decider(url, None, concurrency=4) as engine:
            results = [pair async for pair in engine.decide_stream([*base, *twins])]
            fresh = Article(id="fresh", text="Business news, fresh")
            shared = await asyncio.gather(*(engine.decide(fresh) for _ in range(5)))
    assert len(results) == 60
    assert sum(emu.stats.articles_seen.values()) == 30 + 1  # the 30, then one for the gather
    by_id = {o.id: o for _, o in results}
    for article, twin in zip(base, twins, strict=True):
        assert by_id[twin.id].label == by_id[article.id].label  # type: ignore[union-attr]
        assert by_id[twin.id].source == "cache"  # type: ignore[union-attr]
    assert engine.stats.deduplicated == 30 + 4
    assert len({o.label for o in shared}) == 1  # type: ignore[union-attr]


async def test_only_validated_decisions_are_cached(make_emulator, redis_server, articles) -> None:
    cache = RedisCache(redis_server.url)
    async with make_emulator() as (emu, url), decider(url, cache) as engine:
        emu.config.faults.add_script(["truncated_json", "truncated_json"])
        failed = await engine.decide(articles[0])
        assert failed.error.type == "invalid_answer"  # type: ignore[union-attr]
        ok = await engine.decide_batch(articles[1:4])
    assert all(o.ok for o in ok)
    assert int(redis_server.command("DBSIZE").strip().lstrip(":")) == 3


async def test_original_flow_uses_redis_from_the_env_settings(
    redis_server, thread_emulator, ag_rows
) -> None:
    emu, url = thread_emulator
    compat.configure(settings=Settings(ollama_url=url, redis_url=redis_server.url))
    try:
        async with aiohttp.ClientSession() as session:
            first = await compat.async_get_llm_decision_with_validation(
                session, ag_rows[0]["description"]
            )
            second = await compat.async_get_llm_decision_with_validation(
                session, ag_rows[0]["description"]
            )
            await compat.aclose()
        from_thread = await asyncio.to_thread(
            compat.get_llm_decision_with_validation, ag_rows[0]["description"]
        )
    finally:
        compat.configure(settings=None, cache=None)
    assert (first["source"], second["source"], from_thread["source"]) == (
        "single",
        "cache",
        "cache",
    )
    assert emu.stats.single_requests == 1
