"""The original API: same names and signatures; sync wrappers share one loop and session."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest

from llm_decide import compat
from llm_decide.cache import MemoryCache
from llm_decide.emulator.answers import choose_label
from llm_decide.errors import BackendTimeout, InputError
from llm_decide.settings import Settings
from llm_decide.task import DEFAULT_TASK


@pytest.fixture
def configured(thread_emulator):
    emu, url = thread_emulator
    compat.configure(settings=Settings(ollama_url=url, retries=1), cache=MemoryCache())
    yield emu, url
    compat.configure(settings=None, cache=None)


def label_of(row: dict) -> str:
    return choose_label(f"{row['title']}\n\n{row['description']}", DEFAULT_TASK.label_names)[0]


def test_sync_wrappers_from_four_threads_reuse_a_handful_of_connections(
    configured, ag_rows
) -> None:
    emu, _ = configured
    batches = [ag_rows[i : i + 3] for i in range(0, 300, 3)]  # 100 calls of 3 articles
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(compat.get_batch_llm_decision, batches))
    assert len(results) == 100
    for batch, records in zip(batches, results, strict=True):
        assert [r["id"] for r in records] == [row["id"] for row in batch]
        assert [r["label"] for r in records] == [label_of(row) for row in batch]
    assert emu.stats.batch_requests == 100
    # The original opened a new session (a new TCP connection) per call: 100.
    assert len(emu.stats.connections) <= 8


def test_sync_single_decision_uses_the_cache(configured, ag_rows) -> None:
    emu, _ = configured
    first = compat.get_llm_decision_with_validation(ag_rows[0]["description"])
    second = compat.get_llm_decision_with_validation(ag_rows[0]["description"])
    assert first["source"] == "single" and second["source"] == "cache"
    assert first["label"] == second["label"]
    assert emu.stats.single_requests == 1


def test_batch_keeps_bad_items_as_error_records(configured) -> None:
    records = compat.get_batch_llm_decision(["Sports Sports", {"id": "x"}, 42])
    assert records[0]["label"] == "Sports" and records[0]["error"] is None
    assert records[1]["error"]["type"] == "missing_text"
    assert records[2]["error"]["type"] == "invalid_input"


def test_single_raises_clear_errors(configured) -> None:
    emu, _ = configured
    with pytest.raises(InputError):
        compat.get_llm_decision_with_validation("   ")
    emu.config.faults.rates["hang"] = 1.0
    emu.config.hang_seconds = 5
    compat.configure(settings=Settings(ollama_url=configured[1], retries=0, timeout=0.2))
    try:
        with pytest.raises(BackendTimeout):
            compat.get_llm_decision_with_validation("a fresh article about Business")
    finally:
        emu.config.faults.rates.clear()


def test_ollama_chat_returns_text(configured) -> None:
    answer = json.loads(compat.ollama_chat("hello"))
    assert answer["label"] in ("yes", "no") and answer["confidence"] == 0.35


async def test_async_functions_use_the_callers_session(make_emulator, ag_rows) -> None:
    async with make_emulator(slots=2) as (emu, url):
        compat.configure(settings=Settings(ollama_url=url), cache=MemoryCache())
        try:
            async with aiohttp.ClientSession() as session:
                text = await compat.async_ollama_chat(session, "hi", "llama3.2:3b")
                batch = await compat.async_get_batch_llm_decision(session, ag_rows[:3])
                single = await compat.async_get_llm_decision_with_validation(
                    session, ag_rows[0]["description"]
                )
                await compat.aclose()
                assert not session.closed
        finally:
            compat.configure(settings=None, cache=None)
    assert "label" in text
    assert [r["label"] for r in batch] == [label_of(row) for row in ag_rows[:3]]
    assert single["source"] == "single"
    assert emu.stats.chat_requests == 3
