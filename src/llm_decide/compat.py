"""The original design's functions, same names and signatures, on the new engine.

Async (pass your own long-lived ``aiohttp.ClientSession``)::

    await async_ollama_chat(session, prompt, model)          -> str (the answer text)
    await async_get_batch_llm_decision(session, articles)    -> list[dict], one per article
    await async_get_llm_decision_with_validation(session, description) -> dict

Sync, safe from any number of threads (one shared loop and session)::

    get_batch_llm_decision(articles)                          -> list[dict]
    get_llm_decision_with_validation(description)             -> dict
    ollama_chat(prompt, model=None)                           -> str

Articles are dicts (``id``, ``title``, ``description``/``text``/``content``) or plain
strings. A batch returns one record per article in the given order, each a
decision or an explicit error (``"error": {"type", "message"}``); the single
call raises the error instead (``BackendTimeout``, ``InvalidAnswer``, ...).
Settings come from ``configure(settings=...)`` or, by default, from the
environment (``OLLAMA_URL``, ``MODEL_NAME``, ``REDIS_URL``, ...), read once, here
at the edge. The cache is ``configure(cache=...)``, else the one the settings
name (Redis with ``REDIS_URL``, else SQLite in the user cache directory).
"""

from __future__ import annotations

import asyncio
import atexit
import random
import threading
import weakref
from collections.abc import Sequence
from typing import Any, cast

import aiohttp

from .backends.ollama import OllamaBackend
from .cache.base import DecisionCache
from .cache.memory import MemoryCache
from .cache.select import open_cache
from .engine import Decider
from .errors import InputError, LLMDecideError
from .factory import build_backend, build_decider
from .io import record_to_article
from .models import Article, ErrorRecord
from .resilience import RetryPolicy, call_with_retries
from .settings import Settings
from .sync import SyncDecider

__all__ = [
    "aclose",
    "async_get_batch_llm_decision",
    "async_get_llm_decision_with_validation",
    "async_ollama_chat",
    "configure",
    "get_batch_llm_decision",
    "get_llm_decision_with_validation",
    "ollama_chat",
    "shutdown",
]

_lock = threading.RLock()
_settings: Settings | None = None
_cache: DecisionCache | None = None
_sync: SyncDecider | None = None
# One Decider per caller session, remembered with the loop it runs in.
_deciders: weakref.WeakKeyDictionary[
    aiohttp.ClientSession, tuple[Decider, asyncio.AbstractEventLoop]
] = weakref.WeakKeyDictionary()


def configure(*, settings: Settings | None = None, cache: DecisionCache | None = None) -> None:
    """Set the settings and cache the functions use (closes the shared sync loop)."""
    global _settings, _cache
    shutdown()
    with _lock:
        _settings, _cache = settings, cache
        _deciders.clear()


def shutdown() -> None:
    """Close the shared synchronous Decider (its session and loop thread)."""
    global _sync
    with _lock:
        sync, _sync = _sync, None
    if sync is not None:
        sync.close()


atexit.register(shutdown)


def _current_settings() -> Settings:
    global _settings
    with _lock:
        if _settings is None:
            _settings = Settings()  # the compat API is an edge: it reads the environment
        return _settings


def _cache_for_a_new_decider() -> DecisionCache | None:
    """The configured instance (shared, never closed by a Decider), or a new one from settings.

    Redis and SQLite get one client per Decider (a Redis pool belongs to one event
    loop); they share the same data. An in-memory cache is shared as one instance.
    """
    global _cache
    with _lock:
        spec = _current_settings().cache_spec
        if _cache is None and spec == "memory":
            _cache = MemoryCache(default_ttl=_current_settings().cache_ttl_seconds)
        if _cache is not None:
            return cast(DecisionCache, _SharedCache(_cache))
    return open_cache(spec, ttl=_current_settings().cache_ttl_seconds)


class _SharedCache:
    """The shared cache, not closed when one Decider closes."""

    def __init__(self, inner: DecisionCache) -> None:
        self.get_many = inner.get_many
        self.set_many = inner.set_many

    async def aclose(self) -> None:
        return None


def _decider_for(session: aiohttp.ClientSession) -> Decider:
    with _lock:
        entry = _deciders.get(session)
        if entry is None:
            decider = build_decider(
                _current_settings(), cache=_cache_for_a_new_decider(), session=session
            )
            entry = _deciders[session] = (decider, asyncio.get_running_loop())
        return entry[0]


async def aclose() -> None:
    """Close the caches the async functions opened in this loop (your sessions stay open).

    Call it before your event loop ends when the cache is Redis or SQLite, so
    connections close and buffered cache writes reach the file.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        mine = [(s, d) for s, (d, owner) in list(_deciders.items()) if owner is loop]
        for session, _ in mine:
            del _deciders[session]
    for _, decider in mine:
        await decider.aclose()  # the backend leaves a caller's session open


def _sync_decider() -> SyncDecider:
    global _sync
    with _lock:
        if _sync is None:
            settings = _current_settings()
            # Made here, not in the factory: the factory runs on the loop thread, and
            # taking _lock there while this thread holds it and waits would deadlock.
            cache = _cache_for_a_new_decider()
            _sync = SyncDecider(lambda: build_decider(settings, cache=cache))
        return _sync


def _to_item(obj: Any, position: int) -> Article | ErrorRecord:
    if isinstance(obj, Article):
        return obj
    if isinstance(obj, str):
        obj = {"description": obj}
    if not isinstance(obj, dict):
        return ErrorRecord.from_exception(
            str(position),
            None,
            InputError(f"article {position} is a {type(obj).__name__}; give a dict or a string"),
        )
    return record_to_article(obj, str(position), f"article {position}")


async def _batch_records(decider: Decider, articles_batch: Sequence[Any]) -> list[dict[str, Any]]:
    items = [_to_item(obj, position) for position, obj in enumerate(articles_batch)]
    articles = [item for item in items if isinstance(item, Article)]
    decided = iter(await decider.decide_batch(articles))
    records = []
    for item in items:
        if isinstance(item, Article):
            records.append(next(decided).to_record(item))
        else:
            records.append(item.to_record())
    return records


async def _single_record(decider: Decider, description: Any) -> dict[str, Any]:
    item = _to_item(description, 0)
    if isinstance(item, ErrorRecord):
        raise InputError(item.error.message, type=item.error.type)
    outcome = await decider.decide(item)
    if isinstance(outcome, ErrorRecord):
        raise outcome.exception or LLMDecideError(outcome.error.message)
    return outcome.to_record(item)


async def async_ollama_chat(
    session: aiohttp.ClientSession,
    prompt: str,
    model: str | None = None,
    *,
    schema: dict[str, Any] | None = None,
) -> str:
    """``POST /api/chat`` on the shared session; returns the answer text (retried)."""
    settings = _current_settings()
    backend = build_backend(settings, session=session, model=model)
    result = await call_with_retries(
        lambda: backend.chat([{"role": "user", "content": prompt}], schema=schema),
        RetryPolicy(retries=settings.retries),
        rng=random.Random(),
    )
    return result.content


async def async_get_batch_llm_decision(
    session: aiohttp.ClientSession, articles_batch: Sequence[Any]
) -> list[dict[str, Any]]:
    """Decide a batch (3 per request by default); bad items fall back to single requests."""
    return await _batch_records(_decider_for(session), articles_batch)


async def async_get_llm_decision_with_validation(
    session: aiohttp.ClientSession, description: Any
) -> dict[str, Any]:
    """Cache lookup -> hit returns at once -> miss asks the LLM -> validated -> cached."""
    return await _single_record(_decider_for(session), description)


def get_batch_llm_decision(articles_batch: Sequence[Any]) -> list[dict[str, Any]]:
    """Blocking ``async_get_batch_llm_decision`` for thread pools."""
    return _sync_decider().run(lambda d: _batch_records(d, articles_batch))


def get_llm_decision_with_validation(description: Any) -> dict[str, Any]:
    """Blocking ``async_get_llm_decision_with_validation`` for thread pools."""
    return _sync_decider().run(lambda d: _single_record(d, description))


def ollama_chat(prompt: str, model: str | None = None) -> str:
    """Blocking ``async_ollama_chat`` on the shared session."""

    async def call(decider: Decider) -> str:
        backend = cast(OllamaBackend, decider.backend)
        return await async_ollama_chat(backend.session, prompt, model)

    return _sync_decider().run(call)
