"""Helpers the benchmark scripts share: ports, the emulator process, timed CLI runs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(slots: int, latency: float, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """`llm-decide emulator` in its own process; returns it and its URL once it listens."""
    port = free_port()
    command = [sys.executable, "-m", "llm_decide", "emulator", "--port", str(port)]
    command += ["--slots", str(slots), "--latency", str(latency), *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    process.stderr.readline()  # "... listening on ..."
    return process, f"http://127.0.0.1:{port}"


def timed_run(source: Path, out: Path, url: str, *options: str) -> float:
    """Seconds of one whole `llm-decide run` (interpreter start-up included)."""
    command = [sys.executable, "-m", "llm_decide", "run", str(source), "-o", str(out)]
    command += ["--ollama-url", url, "--no-progress", *options]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started
