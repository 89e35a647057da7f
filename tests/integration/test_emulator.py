"""The emulator speaks Ollama's API: the official client and raw HTTP agree."""

from __future__ import annotations

import json

import aiohttp
import ollama
import pytest

from llm_decide.emulator.server import BUSY_MESSAGE
from llm_decide.task import DEFAULT_TASK


@pytest.fixture
async def ollama_client(emulator):
    _, url = emulator
    async with ollama.AsyncClient(host=url) as client:
        yield client


async def test_official_ollama_client_chats_with_a_schema(ollama_client) -> None:
    client = ollama_client
    messages = [{"role": "user", "content": '<article id="1">\nSports Sports today\n</article>'}]
    response = await client.chat(
        model="llama3.2:3b", messages=messages, format=DEFAULT_TASK.single_schema()
    )
    decision = json.loads(response.message.content or "")
    assert decision["label"] == "Sports" and 0 <= decision["confidence"] <= 1
    assert response.done and (response.eval_count or 0) > 0


async def test_official_client_streams_ndjson_by_default(ollama_client) -> None:
    client = ollama_client
    parts = []
    async for chunk in await client.chat(
        model="llama3.2:3b", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        parts.append(chunk)
    assert len(parts) > 2 and parts[-1].done and not parts[0].done
    assert json.loads("".join(p.message.content or "" for p in parts))["label"] in ("yes", "no")


async def test_official_client_gets_404_for_an_unknown_model(ollama_client) -> None:
    client = ollama_client
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="nope:7b", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404 and info.value.error == "model 'nope:7b' not found"


async def test_official_client_lists_models(ollama_client) -> None:
    listed = await ollama_client.list()
    assert [m.model for m in listed.models] == ["llama3.2:3b"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ("", 400, "missing request body"),
        ({"messages": []}, 400, "model is required"),
        ({"model": "x:1b", "messages": []}, 404, "model 'x:1b' not found"),
        (
            {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "x"}], "format": 5},
            500,
            "invalid format",
        ),
    ],
)
async def test_error_bodies_are_ollamas(emulator, body, status: int, error: str) -> None:
    _, url = emulator
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, str) else json.dumps(body)
        async with session.post(f"{url}/api/chat", data=data) as response:
            assert response.status == status
            assert error in (await response.json())["error"]


async def test_busy_503_has_ollamas_exact_text(emulator) -> None:
    emu, url = emulator
    emu.config.faults.add_script(["busy_503"])
    async with aiohttp.ClientSession() as session:
        body = {
            "model": "llama3.2:3b",
            "messages": [{"role": "user", "content": "x"}],
            "stream": False,
        }
        async with session.post(f"{url}/api/chat", json=body) as response:
            assert response.status == 503
            assert await response.json() == {"error": BUSY_MESSAGE}
    assert "again.  maximum" in BUSY_MESSAGE


async def test_plain_routes_and_unknown_route(emulator) -> None:
    _, url = emulator
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/") as response:
            assert await response.text() == "Ollama is running"
        async with session.get(url + "/api/version") as response:
            assert "version" in await response.json()
        async with session.get(url + "/api/ps") as response:
            assert (await response.json())["models"][0]["name"] == "llama3.2:3b"
        async with session.get(url + "/api/nothing") as response:
            assert response.status == 404


async def test_non_streaming_body_has_ollamas_fields_in_nanoseconds(make_emulator) -> None:
    async with make_emulator(base_latency=0.05) as (_, url), aiohttp.ClientSession() as session:
        body = {
            "model": "llama3.2:3b",
            "messages": [{"role": "user", "content": "x"}],
            "stream": False,
        }
        async with session.post(f"{url}/api/chat", json=body) as response:
            data = await response.json()
    assert data["done"] is True and data["done_reason"] == "stop"
    assert data["total_duration"] >= 50_000_000  # ns
    assert data["created_at"].endswith("Z")


async def test_openai_compatible_route(emulator) -> None:
    _, url = emulator
    schema = DEFAULT_TASK.single_schema()
    body = {
        "model": "llama3.2:3b",
        "messages": [{"role": "user", "content": '<article id="a">\nWorld news\n</article>'}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": schema}},
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            data = await response.json()
        async with session.post(
            f"{url}/v1/chat/completions", json={**body, "model": "x"}
        ) as response:
            error = await response.json()
            assert response.status == 404
    assert json.loads(data["choices"][0]["message"]["content"])["label"] == "World"
    assert data["object"] == "chat.completion" and data["usage"]["total_tokens"] > 0
    assert error["error"]["type"] == "not_found_error"


async def test_slots_queue_requests_fifo(make_emulator) -> None:
    import asyncio
    import time

    async with (
        make_emulator(slots=2, base_latency=0.1) as (emu, url),
        aiohttp.ClientSession() as session,
    ):
        body = {
            "model": "llama3.2:3b",
            "messages": [{"role": "user", "content": "x"}],
            "stream": False,
        }

        async def one() -> float:
            async with session.post(f"{url}/api/chat", json=body) as response:
                await response.read()
            return time.perf_counter()

        started = time.perf_counter()
        finished = await asyncio.gather(*(one() for _ in range(4)))
    assert emu.stats.max_in_flight == 2
    # two waves of two: the last finishes after about two latencies, not one
    assert max(finished) - started >= 0.2
