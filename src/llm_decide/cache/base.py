"""The cache protocol and its key scheme (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypedDict

__all__ = ["DEFAULT_TTL_SECONDS", "KEY_PREFIX", "CachedDecision", "DecisionCache", "cache_key"]

#: The original design keeps decisions for 48 hours.
DEFAULT_TTL_SECONDS = 48 * 3600
KEY_PREFIX = "llm-decide:v1"


class CachedDecision(TypedDict):
    label: str
    confidence: float
    reason: str


def cache_key(task_fingerprint: str, model: str, digest: str) -> str:
    """``llm-decide:v1:{task fingerprint}:{model}:{sha256(normalised text)}``."""
    return f"{KEY_PREFIX}:{task_fingerprint}:{model}:{digest}"


class DecisionCache(Protocol):
    """Where validated decisions are kept between runs."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, CachedDecision]:
        """The entries found (missing or expired keys are simply absent)."""
        ...

    async def set_many(
        self, items: Mapping[str, CachedDecision], ttl: float | None = None
    ) -> None: ...

    async def aclose(self) -> None: ...
