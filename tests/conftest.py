"""Shared fixtures: the emulator over real sockets, and the AG News sample."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
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


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test (and the CLI processes it starts) gets its own user cache directory."""
    cache_home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    for name in ("REDIS_URL", "LLM_DECIDE_CACHE", "OLLAMA_URL", "MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    return cache_home


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


class RedisServer:
    """A real `redis-server` (Debian's package) on a free loopback port, in a temp dir."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def command(self, *args: str) -> str:
        """One command over a raw socket (inline protocol); the reply as text."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall((" ".join(args) + "\r\n").encode())
            time.sleep(0.05)
            return sock.recv(1 << 16).decode()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
