"""Warm reruns through the CLI with Redis and with SQLite, and the latency of one hit.

Generates N synthetic articles, decides them once against the emulator (cold,
filling the cache), then decides them again (warm) through `llm-decide run`
with each cache. Prints articles/s of the whole CLI run (wall time, start-up
included), the LLM requests the warm run made (must be 0), and p50/p99 of one
cache hit through the original `async_get_llm_decision_with_validation`.

    python benchmarks/cache.py --articles 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
from _support import free_port, start_emulator, timed_run

from llm_decide import compat
from llm_decide.metrics import percentile
from llm_decide.settings import Settings

WORDS = [
    "market",
    "team",
    "game",
    "stock",
    "election",
    "space",
    "research",
    "company",
    "league",
    "minister",
    "rocket",
    "chip",
    "profit",
    "season",
    "vote",
    "court",
    "oil",
    "bank",
    "phone",
    "software",
    "treaty",
    "striker",
    "merger",
    "telescope",
]


def write_articles(path: Path, count: int) -> None:
    rng = random.Random(7)
    with path.open("w") as out:
        for i in range(count):
            title = " ".join(rng.choice(WORDS) for _ in range(6))
            body = " ".join(rng.choice(WORDS) for _ in range(40))
            out.write(json.dumps({"id": f"syn-{i:07d}", "title": title, "description": body}))
            out.write("\n")


def emulator_requests(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_emulator/stats") as response:
        return int(json.load(response)["chat_requests"])


def run_cli(source: Path, url: str, cache: str, tmp: Path) -> float:
    options = ("--cache", cache, "--concurrency", "16", "--overwrite")
    return timed_run(source, tmp / "out.jsonl", url, *options)


async def hit_latencies(url: str, cache: str, calls: int) -> list[float]:
    compat.configure(settings=Settings(ollama_url=url, cache=cache))
    text = "A warm article about the league season and a striker."
    timings = []
    async with aiohttp.ClientSession() as session:
        await compat.async_get_llm_decision_with_validation(session, text)  # fill
        for _ in range(calls):
            started = time.perf_counter()
            record = await compat.async_get_llm_decision_with_validation(session, text)
            timings.append(time.perf_counter() - started)
            assert record["source"] == "cache"
        await compat.aclose()
    compat.configure()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--hits", type=int, default=2000, help="single-hit latency samples")
    args = parser.parse_args()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "articles.jsonl"
        write_articles(source, args.articles)
        emulator, url = start_emulator(16, 0.0)
        redis_port = free_port()
        redis_args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        redis_args += ["--appendonly", "no", "--dir", str(tmp)]
        redis = subprocess.Popen([redis_server, *redis_args], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        caches = {
            "redis": f"redis://127.0.0.1:{redis_port}/0",
            "sqlite": f"sqlite://{tmp / 'decisions.sqlite3'}",
        }
        rows = []
        try:
            for name, spec in caches.items():
                cold = run_cli(source, url, spec, tmp)
                before = emulator_requests(url)
                # Three warm runs; the median, since one run on a shared 2-core box varies.
                warm = statistics.median(run_cli(source, url, spec, tmp) for _ in range(3))
                requests = emulator_requests(url) - before
                hits = asyncio.run(hit_latencies(url, spec, args.hits))
                rows.append((name, cold, warm, requests, hits))
        finally:
            emulator.terminate()
            redis.terminate()
            emulator.wait()
            redis.wait()

    n = args.articles
    print(
        f"{n:,} articles; warm = median of three reruns through `llm-decide run` "
        "(wall time incl. start-up)"
    )
    print(
        f"{'cache':<8}{'cold art/s':>12}{'warm art/s':>12}{'warm LLM requests':>19}"
        f"{'hit p50 ms':>12}{'hit p99 ms':>12}"
    )
    for name, cold, warm, requests, hits in rows:
        print(
            f"{name:<8}{n / cold:>12,.0f}{n / warm:>12,.0f}{requests:>19}"
            f"{percentile(hits, 50) * 1e3:>12.3f}{percentile(hits, 99) * 1e3:>12.3f}"
        )


if __name__ == "__main__":
    main()
