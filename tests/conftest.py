"""Shared fixtures: the emulator over real sockets, and the AG News sample."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from llm_decide.emulator import Emulator, EmulatorConfig, emulator_in_thread, serve_emulator
from llm_decide.models import Article

# The checkout sits beside shared/ (locally and in CI).
AG_NEWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ag_news_dev.jsonl"
SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "articles.jsonl"


def ag_news_rows(limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of ../shared/data/ag_news_dev.jsonl (or the shipped excerpt if it is absent)."""
    path = AG_NEWS if AG_NEWS.exists() else SAMPLE
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    if not limit:
        return rows
    # The shipped excerpt is short: repeat it with fresh ids and texts to reach `limit`.
    repeated = []
    for i in range(limit):
        row, copy = dict(rows[i % len(rows)]), i // len(rows)
        if copy:
            row["id"] = f"{row['id']}-{copy}"
            row["description"] = f"{row['description']} (copy {copy})"
        repeated.append(row)
    return repeated


def to_article(row: dict[str, Any]) -> Article:
    return Article(id=row["id"], title=row["title"], text=row["description"])


@pytest.fixture
def ag_rows() -> list[dict[str, Any]]:
    return ag_news_rows(300)


@pytest.fixture
def articles(ag_rows: list[dict[str, Any]]) -> list[Article]:
    return [to_article(row) for row in ag_rows]


EmulatorFactory = Callable[..., AbstractAsyncContextManager[tuple[Emulator, str]]]


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[Emulator, str]]:
    """A default emulator (1 slot, no latency) in the test's loop."""
    async with serve_emulator(EmulatorConfig()) as running:
        yield running


@pytest.fixture
def make_emulator() -> EmulatorFactory:
    """``async with make_emulator(slots=4, shuffle=True) as (emu, url): ...``"""

    def factory(**config: Any) -> AbstractAsyncContextManager[tuple[Emulator, str]]:
        return serve_emulator(EmulatorConfig(**config))

    return factory


@pytest.fixture
def thread_emulator() -> Iterator[tuple[Emulator, str]]:
    """An emulator on its own loop thread, for sync code and CLI subprocesses."""
    with emulator_in_thread(EmulatorConfig(slots=4, shuffle=True)) as running:
        yield running
