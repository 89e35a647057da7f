from __future__ import annotations

from llm_decide.cache import MemoryCache, cache_key
from llm_decide.models import text_digest

VALUE = {"label": "World", "confidence": 0.5, "reason": "r"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    await cache.set_many({"k": VALUE}, ttl=10)
    clock.now = 9.9
    assert await cache.get_many(["k"]) == {"k": VALUE}
    clock.now = 10.0
    assert await cache.get_many(["k"]) == {}
    assert len(cache) == 0


async def test_least_recently_used_is_evicted_first() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set_many({"a": VALUE, "b": VALUE})
    await cache.get_many(["a"])
    await cache.set_many({"c": VALUE})
    assert set(await cache.get_many(["a", "b", "c"])) == {"a", "c"}


def test_keys_fold_whitespace_but_not_words() -> None:
    assert text_digest("Hello   world\n") == text_digest(" Hello world")
    assert text_digest("Hello world") != text_digest("Hello there")
    key = cache_key("fp", "llama3.2:3b", text_digest("x"))
    assert key.startswith("llm-decide:v1:fp:llama3.2:3b:") and len(key.rsplit(":", 1)[1]) == 64
