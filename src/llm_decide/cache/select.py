"""Choose a cache from a spec: none | memory | sqlite | sqlite://PATH | redis://HOST:PORT/DB."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigurationError
from .base import DEFAULT_TTL_SECONDS, DecisionCache

__all__ = ["CACHE_SPEC_HELP", "default_sqlite_path", "open_cache"]

CACHE_SPEC_HELP = "none | memory | sqlite | sqlite:///ABS/PATH | redis://HOST:PORT/DB"


def default_sqlite_path() -> Path:
    """``decisions.sqlite3`` in the user's cache directory (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("llm-decide")) / "decisions.sqlite3"


def open_cache(spec: str, *, ttl: float = DEFAULT_TTL_SECONDS) -> DecisionCache | None:
    """A new cache for ``spec`` (None for ``none``); raises ConfigurationError for a bad spec."""
    spec = spec.strip()
    if spec == "none":
        return None
    if spec == "memory":
        from .memory import MemoryCache

        return MemoryCache(default_ttl=ttl)
    if spec == "sqlite" or spec.startswith("sqlite://"):
        from .sqlite import SQLiteCache

        path = spec[len("sqlite://") :] if spec != "sqlite" else ""
        return SQLiteCache(path or default_sqlite_path(), default_ttl=ttl)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisCache

        return RedisCache(spec, default_ttl=ttl)
    raise ConfigurationError(f"unknown cache {spec!r}; use one of: {CACHE_SPEC_HELP}")
