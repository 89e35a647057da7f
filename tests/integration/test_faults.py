"""Fault matrix: every fault alone, then all together; and a server that goes away."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter

import pytest
from aiohttp import web

from llm_decide.backends import HTTPOptions, OllamaBackend
from llm_decide.emulator import FAULT_KINDS, Emulator, EmulatorConfig, FaultPlan
from llm_decide.emulator.answers import choose_label
from llm_decide.engine import Decider
from llm_decide.models import Article, Decision, ErrorRecord
from llm_decide.resilience import CircuitBreaker, RetryPolicy
from llm_decide.task import DEFAULT_TASK

from ..conftest import ag_news_rows, to_article

RETRYABLE_TYPES = {
    "backend_timeout",
    "backend_http_error",
    "server_busy",
    "backend_unavailable",
    "invalid_answer",
}


def fault_free(article: Article) -> str:
    return choose_label(article.prompt_text, DEFAULT_TASK.label_names)[0]


def make_decider(url: str) -> Decider:
    return Decider(
        OllamaBackend(base_url=url, model="llama3.2:3b", http=HTTPOptions(total_timeout=0.5)),
        concurrency=8,
        retry=RetryPolicy(retries=3, base=0.005, cap=0.05),
        breaker=CircuitBreaker(failure_threshold=8, open_seconds=0.05),
        seed=1,
    )


async def run_with_faults(make_emulator, articles: list[Article], rates: dict[str, float]):
    config = {
        "slots": 8,
        "shuffle": True,
        "hang_seconds": 3.0,
        "slow_headers_seconds": 0.1,
        "faults": FaultPlan(rates=rates, seed=7),
    }
    async with make_emulator(**config) as (emu, url), make_decider(url) as decider:
        outcomes = [o async for _, o in decider.decide_stream(articles)]
    return emu, decider, outcomes


def check(articles: list[Article], outcomes: list) -> tuple[int, Counter[str]]:
    ids = [o.id for o in outcomes]
    assert len(ids) == len(articles) and len(set(ids)) == len(ids)  # one record each
    by_id = {a.id: a for a in articles}
    errors: Counter[str] = Counter()
    for outcome in outcomes:
        if isinstance(outcome, Decision):
            assert outcome.label == fault_free(by_id[outcome.id]), outcome
        else:
            assert isinstance(outcome, ErrorRecord)
            assert outcome.error.type in RETRYABLE_TYPES and outcome.error.message
            errors[outcome.error.type] += 1
    return len(articles) - sum(errors.values()), errors


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_each_fault_alone_loses_nothing(make_emulator, kind: str) -> None:
    articles = [to_article(r) for r in ag_news_rows(1000)]
    emu, _decider, outcomes = await run_with_faults(make_emulator, articles, {kind: 0.15})
    decided, errors = check(articles, outcomes)
    assert emu.stats.faults[kind] > 0  # the fault did happen
    assert decided >= 990, errors  # errors only where every retry / re-ask failed too


async def test_all_faults_together_on_1000_articles(make_emulator) -> None:
    articles = [to_article(r) for r in ag_news_rows(1000)]
    rates = dict.fromkeys(FAULT_KINDS, 0.04)
    rates.update(
        {
            "error_500": 0.10,
            "busy_503": 0.05,
            "hang": 0.05,
            "drop_item": 0.05,
            "invalid_json": 0.05,
            "reset": 0.02,
        }
    )
    emu, decider, outcomes = await run_with_faults(make_emulator, articles, rates)
    decided, errors = check(articles, outcomes)
    assert decided >= 990, errors
    assert sum(emu.stats.faults.values()) > 100
    assert decider.stats.retries and decider.stats.fallbacks > 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_server_gone_for_seconds_opens_then_closes_the_circuit(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="llm_decide")
    articles = [to_article(r) for r in ag_news_rows(300)]
    emulator = Emulator(EmulatorConfig(slots=4, base_latency=0.01))
    port = free_port()

    runners: list[web.AppRunner] = []

    async def start() -> web.AppRunner:
        runner = web.AppRunner(emulator.app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return runner

    runner = await start()
    decider = Decider(
        OllamaBackend(base_url=f"http://127.0.0.1:{port}", model="llama3.2:3b"),
        concurrency=4,
        retry=RetryPolicy(retries=3, base=0.01, cap=0.1),
        breaker=CircuitBreaker(failure_threshold=3, open_seconds=0.3),
    )
    outcomes = []
    async with decider:
        async for _, outcome in decider.decide_stream(articles):
            outcomes.append(outcome)
            if len(outcomes) == 60:
                await runner.cleanup()  # the server goes away...
                restart = asyncio.get_running_loop().call_later(
                    2.0, lambda: asyncio.ensure_future(start())
                )
    restart.cancel()
    for running in runners[1:]:
        await running.cleanup()
    assert len(runners) == 2  # it did come back
    decided, errors = check(articles, outcomes)
    assert decided == 300, errors  # nothing lost
    moves = [
        (r.__dict__["from"], r.__dict__["to"])
        for r in caplog.records
        if getattr(r, "event", None) == "circuit"
    ]
    assert ("closed", "open") in moves and moves[-1][1] == "closed"
