"""Throughput against the emulator: our engine, our CLI, and the original design.

Starts `llm-decide emulator` in a separate process with S slots and a fixed
latency L (shuffled batch answers), then decides N AG News articles three ways:

- engine:   Decider.decide_stream, concurrency = S, batch size 3
- cli:      `llm-decide run --concurrency S --cache none` as a subprocess (wall
            time, including interpreter start-up)
- original: the original design: ThreadPoolExecutor(4), each batch of 3 through
            a sync wrapper that creates a new event loop and a new ClientSession

and prints each as articles/s and as a ratio of the server's theoretical maximum
S / L x 3 articles/s (every slot busy all the time with full batches).

    python benchmarks/throughput.py --slots 8 --latency 0.1 --articles 4800
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from _support import start_emulator, timed_run

from llm_decide import Article, Decider, OllamaBackend
from llm_decide.emulator.answers import choose_label
from llm_decide.task import DEFAULT_TASK

ROOT = Path(__file__).resolve().parents[1]
AG_NEWS = ROOT.parent / "shared" / "data" / "ag_news_dev.jsonl"
MODEL = "llama3.2:3b"


def load_rows(count: int) -> list[dict]:
    """``count`` AG News rows; repeats get a fresh id and a marked text, so every
    article is distinct (identical texts would be decided once: single-flight)."""
    source = AG_NEWS if AG_NEWS.exists() else ROOT / "examples" / "articles.jsonl"
    base = [json.loads(line) for line in source.read_text().splitlines() if line]
    rows = []
    for i in range(count):
        row, copy = dict(base[i % len(base)]), i // len(base)
        row["id"] = f"{row['id']}-{copy}"
        if copy:
            row["description"] = f"{row['description']} (copy {copy})"
        rows.append(row)
    return rows


async def run_engine(url: str, rows: list[dict], slots: int) -> tuple[float, int]:
    articles = [Article(id=r["id"], title=r["title"], text=r["description"]) for r in rows]
    wrong = 0
    async with Decider(OllamaBackend(base_url=url, model=MODEL), concurrency=slots) as decider:
        started = time.perf_counter()
        async for article, outcome in decider.decide_stream(articles):
            assert article is not None
            expected = choose_label(article.prompt_text, DEFAULT_TASK.label_names)[0]
            wrong += getattr(outcome, "label", None) != expected
        return time.perf_counter() - started, wrong


def run_cli(url: str, rows: list[dict], slots: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        elapsed = timed_run(
            source, out, url, "--concurrency", str(slots), "--cache", "none", "--overwrite"
        )
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(records) == len(rows) == len({r["id"] for r in records})
        by_id = {r["id"]: r for r in rows}
        wrong = sum(
            rec["label"]
            != choose_label(
                f"{by_id[rec['id']]['title']}\n\n{by_id[rec['id']]['description']}",
                DEFAULT_TASK.label_names,
            )[0]
            for rec in records
        )
        return elapsed, wrong


def run_original(url: str, rows: list[dict]) -> float:
    """ThreadPoolExecutor(4) -> sync wrapper -> new loop + new ClientSession per batch."""
    articles = [Article(id=r["id"], title=r["title"], text=r["description"]) for r in rows]
    batches = [articles[i : i + 3] for i in range(0, len(articles), 3)]

    async def async_batch(batch: list[Article]) -> list[dict]:
        connector = aiohttp.TCPConnector(limit=100, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=300)
        ids = [a.id for a in batch]
        body = {
            "model": MODEL,
            "messages": DEFAULT_TASK.batch_messages(batch, 4000),
            "format": DEFAULT_TASK.batch_schema(ids),
            "stream": False,
        }
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.post(f"{url}/api/chat", json=body) as response:
                data = await response.json()
        return json.loads(data["message"]["content"])["decisions"]  # type: ignore[no-any-return]

    def sync_wrapper(batch: list[Article]) -> list[dict]:
        return asyncio.run(async_batch(batch))  # a new event loop per call, as designed

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        decided = sum(len(r) for r in pool.map(sync_wrapper, batches))
    assert decided == len(articles)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--articles", type=int, default=4800)
    args = parser.parse_args()

    rows = load_rows(args.articles)
    ceiling = args.slots / args.latency * 3
    process, url = start_emulator(args.slots, args.latency, "--shuffle")
    try:
        engine_s, engine_wrong = asyncio.run(run_engine(url, rows, args.slots))
        cli_s, cli_wrong = run_cli(url, rows, args.slots)
        original_s = run_original(url, rows)
    finally:
        process.terminate()
        process.wait()

    n = len(rows)
    print(f"emulator: {args.slots} slots, {args.latency}s per request, batch 3, {n} articles")
    print(f"theoretical maximum: {ceiling:,.1f} articles/s")
    print(f"{'scenario':<44}{'articles/s':>12}{'ratio':>8}")
    for name, seconds in (
        ("engine  (Decider.decide_stream)", engine_s),
        ("cli     (llm-decide run, wall incl. start-up)", cli_s),
        ("original (4 threads, new loop+session/batch)", original_s),
    ):
        rate = n / seconds
        print(f"{name:<44}{rate:>12,.1f}{rate / ceiling:>8.3f}")
    print(f"engine vs original: {original_s / engine_s:.2f}x faster")
    print(f"wrong labels: engine {engine_wrong}, cli {cli_wrong}")


if __name__ == "__main__":
    main()
