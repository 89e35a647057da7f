"""Faults the emulator can inject, by seeded rate or by script (pure)."""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONTENT_FAULTS", "FAULT_KINDS", "TRANSPORT_FAULTS", "FaultPlan", "render_answer"]

#: Faults in how the server answers (status, connection, timing).
TRANSPORT_FAULTS = ("error_500", "busy_503", "hang", "reset", "slow_headers")
#: Faults in what the model says (the HTTP exchange itself succeeds).
CONTENT_FAULTS = (
    "invalid_json",
    "truncated_json",
    "drop_item",
    "duplicate_id",
    "unknown_id",
    "bad_label",
)
FAULT_KINDS = TRANSPORT_FAULTS + CONTENT_FAULTS


@dataclass
class FaultPlan:
    """Which fault (if any) the next chat request gets.

    ``script`` faults are used first, one per request, in order ("none" lets a
    request through); then each kind fires with its ``rates`` probability.
    """

    rates: dict[str, float] = field(default_factory=dict)
    script: deque[str] = field(default_factory=deque)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = (set(self.rates) | set(self.script)) - set(FAULT_KINDS) - {"none"}
        if unknown:
            raise ValueError(
                f"unknown fault kind(s) {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}"
            )
        self._rng = random.Random(self.seed)

    def add_script(self, kinds: Iterable[str]) -> None:
        kinds = list(kinds)
        bad = set(kinds) - set(FAULT_KINDS) - {"none"}
        if bad:
            raise ValueError(f"unknown fault kind(s) {sorted(bad)}")
        self.script.extend(kinds)

    def next_fault(self, batch: bool) -> str | None:
        if self.script:
            kind = self.script.popleft()
            return None if kind == "none" else kind
        for kind, rate in self.rates.items():
            if kind in ("drop_item", "duplicate_id", "unknown_id") and not batch:
                continue
            if rate > 0 and self._rng.random() < rate:
                return kind
        return None

    @property
    def rng(self) -> random.Random:
        return self._rng


def render_answer(
    answer: list[dict[str, Any]] | dict[str, Any],
    fault: str | None,
    rng: random.Random,
    *,
    shuffle: bool = False,
) -> str:
    """The answer as the model's text, after shuffling and a content fault."""
    if isinstance(answer, list):
        items = [dict(item) for item in answer]
        if shuffle:
            rng.shuffle(items)
        if items and fault == "drop_item":
            items.pop(rng.randrange(len(items)))
        elif items and fault == "duplicate_id":
            twin = dict(rng.choice(items))
            twin["reason"] = "a second, conflicting answer"
            items.append(twin)
        elif items and fault == "unknown_id":
            items[rng.randrange(len(items))]["id"] = "no-such-article"
        elif items and fault == "bad_label":
            items[rng.randrange(len(items))]["label"] = "Not-A-Label"
        text = json.dumps({"decisions": items})
    else:
        single: Mapping[str, Any] = answer
        if fault == "bad_label":
            single = {**single, "label": "Not-A-Label"}
        text = json.dumps(single)
    if fault == "invalid_json":
        return "Sure! Here is the JSON you asked for: " + text.replace('"', "'")
    if fault == "truncated_json":
        return text[: max(1, len(text) // 2)]
    return text
