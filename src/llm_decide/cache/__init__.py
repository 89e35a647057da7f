"""Decision caches behind one protocol; only validated decisions are ever stored.

``MemoryCache`` (in-process LRU), ``SQLiteCache`` (the embedded default, one
file shared by processes), ``RedisCache`` (the scale-out path). Redis and
SQLite are imported on first use.
"""

from .base import DEFAULT_TTL_SECONDS, CachedDecision, DecisionCache, cache_key
from .guard import GuardedCache
from .memory import MemoryCache
from .select import CACHE_SPEC_HELP, default_sqlite_path, open_cache

__all__ = [
    "CACHE_SPEC_HELP",
    "DEFAULT_TTL_SECONDS",
    "CachedDecision",
    "DecisionCache",
    "GuardedCache",
    "MemoryCache",
    "cache_key",
    "default_sqlite_path",
    "open_cache",
]
