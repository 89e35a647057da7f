"""Decision caches behind one protocol; only validated decisions are ever stored."""

from .base import DEFAULT_TTL_SECONDS, CachedDecision, DecisionCache, cache_key
from .memory import MemoryCache

__all__ = ["DEFAULT_TTL_SECONDS", "CachedDecision", "DecisionCache", "MemoryCache", "cache_key"]
