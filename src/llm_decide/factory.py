"""Build a Decider from Settings (used by the CLI and the compat layer)."""

from __future__ import annotations

import aiohttp

from .backends.base import HTTPOptions
from .backends.ollama import OllamaBackend
from .cache.base import DecisionCache
from .engine import Decider
from .metrics import Events
from .resilience import CircuitBreaker, RetryPolicy
from .settings import Settings
from .task import DEFAULT_TASK, DecisionTask, load_task

__all__ = ["build_backend", "build_decider"]


def build_backend(
    settings: Settings, *, session: aiohttp.ClientSession | None = None, model: str | None = None
) -> OllamaBackend:
    return OllamaBackend(
        base_url=settings.ollama_url,
        model=model or settings.model_name,
        options={"temperature": settings.temperature},
        keep_alive=settings.keep_alive,
        http=HTTPOptions(
            total_timeout=settings.timeout,
            connect_timeout=settings.connect_timeout,
            pool_limit=settings.pool_limit,
        ),
        session=session,
    )


def build_decider(
    settings: Settings,
    *,
    cache: DecisionCache | None = None,
    events: Events | None = None,
    task: DecisionTask | None = None,
    session: aiohttp.ClientSession | None = None,
) -> Decider:
    if task is None:
        task = load_task(settings.task_file) if settings.task_file else DEFAULT_TASK
    return Decider(
        build_backend(settings, session=session),
        task=task,
        cache=cache,
        batch_size=settings.batch_size,
        concurrency=settings.concurrency,
        retry=RetryPolicy(retries=settings.retries),
        max_chars=settings.max_chars,
        cache_ttl=settings.cache_ttl_seconds,
        events=events,
        breaker=CircuitBreaker(
            failure_threshold=settings.breaker_failures,
            open_seconds=settings.breaker_open_seconds,
        ),
        breaker_max_wait=settings.breaker_max_wait,
    )
