"""The `llm-decide` command end to end, as a subprocess against the emulator."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llm_decide.emulator.answers import choose_label
from llm_decide.task import DEFAULT_TASK

from ..conftest import ag_news_rows


def llm_decide(*args: str, url: str | None = None, stdin: str | None = None, timeout: float = 120):
    env_url = ["--ollama-url", url] if url and args and args[0] in ("run", "check") else []
    return subprocess.run(
        [sys.executable, "-m", "llm_decide", *args, *env_url],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn_run(source: Path, out: Path, url: str, *options: str) -> subprocess.Popen[str]:
    """`llm-decide run` in the background (stderr captured), for signals and scrapes."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_decide",
            "run",
            str(source),
            "-o",
            str(out),
            "--ollama-url",
            url,
            "--no-progress",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_decides_ag_news_once_each_on_the_right_article(thread_emulator, tmp_path) -> None:
    emu, url = thread_emulator
    rows = ag_news_rows(300)
    out = tmp_path / "out.jsonl"
    result = llm_decide(
        "run",
        str(write_jsonl(tmp_path / "in.jsonl", rows)),
        "-o",
        str(out),
        "--concurrency",
        "4",
        url=url,
    )
    assert result.returncode == 0, result.stderr
    got = {r["id"]: r for r in records(out)}
    assert len(records(out)) == len(rows) == len(got)
    for row in rows:
        record = got[row["id"]]
        expected = choose_label(
            f"{row['title']}\n\n{row['description']}", DEFAULT_TASK.label_names
        )[0]
        assert record["label"] == expected and record["error"] is None
        assert record["source"] in ("batch", "single") and record["model"] == "llama3.2:3b"
        assert record["input_label"] == row["label"]  # pass-through, renamed: `label` is ours
    assert sorted(emu.stats.articles_seen.values()) == [1] * len(rows)  # each asked once
    assert emu.stats.batch_requests >= 90
    assert "articles" in result.stderr and "decided" in result.stderr  # the summary


def test_custom_task_file_and_csv_input(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    task = tmp_path / "task.toml"
    task.write_text(
        'name = "desk"\nversion = "1"\ninstructions = "Keep?"\n'
        '[[labels]]\nname = "keep"\n[[labels]]\nname = "skip"\n'
    )
    csv_in = tmp_path / "in.csv"
    csv_in.write_text('id,title,description\n1,Keep this,"keep keep, please"\n2,Skip,"skip it"\n')
    out = tmp_path / "out.jsonl"
    result = llm_decide("run", str(csv_in), "-o", str(out), "--task", str(task), url=url)
    assert result.returncode == 0, result.stderr
    assert {r["id"]: r["label"] for r in records(out)} == {"1": "keep", "2": "skip"}


def test_stdin_to_stdout(thread_emulator) -> None:
    _, url = thread_emulator
    lines = "".join(json.dumps({"id": f"s{i}", "text": "World World"}) + "\n" for i in range(5))
    result = llm_decide("run", "-", "--no-progress", url=url, stdin=lines)
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["id"] for r in out) == [f"s{i}" for i in range(5)]
    assert {r["label"] for r in out} == {"World"}


def test_bad_input_gives_error_records_exit_1_and_loses_nothing(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        b'{"id": "ok1", "text": "Sports"}\n'
        b"not json at all\n"
        b'{"id": "empty", "text": ""}\n'
        b'{"id": "ok1", "text": "duplicate id"}\n'
        b'{"id": "bytes", "text": "\xff\xfe"}\n'
        b'{"id": "long", "text": "' + b"Business " * 2000 + b'"}\n'
    )
    out = tmp_path / "out.jsonl"
    result = llm_decide("run", str(bad), "-o", str(out), url=url)
    assert result.returncode == 1, result.stderr
    got = records(out)
    assert len(got) == 6
    errors = sorted((r["id"], r["error"]["type"]) for r in got if r["error"])
    assert errors == [
        ("empty", "missing_text"),
        ("line-2", "invalid_json"),
        ("line-5", "invalid_utf8"),
        ("ok1", "duplicate_id"),
    ]
    long = next(r for r in got if r["id"] == "long")
    assert long["label"] == "Business" and "first 4000" in long["warnings"][0]


def test_unknown_model_exits_2_with_the_fix(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    path = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(5))
    result = llm_decide(
        "run", str(path), "-o", str(tmp_path / "o.jsonl"), "--model", "nope:1b", url=url
    )
    assert result.returncode == 2
    assert "ollama pull nope:1b" in result.stderr


def test_unreachable_server_exits_2_with_the_fix(tmp_path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(5))
    url = f"http://127.0.0.1:{free_port()}"
    result = llm_decide("run", str(path), url=url)
    assert result.returncode == 2
    assert "cannot reach Ollama" in result.stderr and "OLLAMA_URL" in result.stderr


def test_unreadable_task_file_exits_2(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    path = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(2))
    (tmp_path / "t.toml").write_text("name = [")
    result = llm_decide("run", str(path), "--task", str(tmp_path / "t.toml"), url=url)
    assert result.returncode == 2 and "not valid TOML" in result.stderr


def test_bad_settings_exit_2(tmp_path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(2))
    result = llm_decide("run", str(path), "--batch-size", "0")
    assert result.returncode == 2 and "batch_size" in result.stderr


@pytest.mark.parametrize(
    ("model", "code", "text"), [("llama3.2:3b", 0, "is pulled"), ("other", 2, "ollama pull other")]
)
def test_check(thread_emulator, model: str, code: int, text: str) -> None:
    _, url = thread_emulator
    result = llm_decide("check", "--model", model, url=url)
    assert result.returncode == code and text in result.stderr


def test_demo_runs_on_the_emulator_and_says_so(tmp_path) -> None:
    out = tmp_path / "demo.jsonl"
    result = llm_decide("demo", "-o", str(out), "--latency", "0.01")
    assert result.returncode == 0, result.stderr
    assert "emulator" in result.stderr and len(records(out)) == 60


def test_help_teaches() -> None:
    result = llm_decide("run", "--help")
    assert result.returncode == 0
    for needle in ("--concurrency", "OLLAMA_URL", "Exit codes", "--batch-size", "stdin"):
        assert needle in result.stdout
