"""Settings read from the environment, at the edge only (CLI, compat layer, service).

The library never reads ``os.environ`` itself: build a ``Settings`` here and pass
what it holds down to constructors.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every knob, with its environment variable (``LLM_DECIDE_*`` unless noted)."""

    model_config = SettingsConfigDict(
        env_prefix="LLM_DECIDE_", extra="ignore", populate_by_name=True
    )

    #: ``OLLAMA_URL``: the Ollama server (``http://ollama:11434`` inside Docker).
    ollama_url: str = Field(
        "http://localhost:11434", validation_alias=AliasChoices("OLLAMA_URL", "ollama_url")
    )
    #: ``MODEL_NAME``: the model every decision uses.
    model_name: str = Field(
        "llama3.2:3b", validation_alias=AliasChoices("MODEL_NAME", "model_name")
    )
    batch_size: int = Field(3, ge=1, le=100)
    concurrency: int = Field(4, ge=1, le=1024)
    timeout: float = Field(300.0, gt=0)
    connect_timeout: float = Field(10.0, gt=0)
    retries: int = Field(3, ge=0, le=20)
    max_chars: int = Field(4000, ge=100)
    temperature: float = Field(0.0, ge=0, le=2)
    keep_alive: str | None = None
    pool_limit: int = Field(100, ge=1)
    task_file: Path | None = None
    #: ``none | memory | sqlite | sqlite:///PATH | redis://HOST:PORT/DB``; unset: REDIS_URL
    #: if that is set, else SQLite in the user cache directory.
    cache: str | None = None
    #: ``REDIS_URL``: the Redis cache, used when ``cache`` is not set.
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "redis_url"))
    #: ``CACHE_TTL_SECONDS``: how long a decision is kept (48 h).
    cache_ttl_seconds: int = Field(
        172800, ge=1, validation_alias=AliasChoices("CACHE_TTL_SECONDS", "cache_ttl_seconds")
    )
    #: Carry on uncached when the cache cannot be reached at start.
    cache_optional: bool = False
    #: Consecutive transient failures that open the circuit breaker.
    breaker_failures: int = Field(5, ge=1)
    #: Seconds the circuit stays open before one probe is let through.
    breaker_open_seconds: float = Field(5.0, gt=0)
    #: Seconds one request waits in all for an open circuit before it becomes an error record.
    breaker_max_wait: float = Field(60.0, ge=0)

    @property
    def cache_spec(self) -> str:
        if self.cache:
            return self.cache
        return self.redis_url or "sqlite"
