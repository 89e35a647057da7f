"""The CLI's cache: SQLite by default, Redis by URL, failures at start are exit 2."""

from __future__ import annotations

from ..conftest import ag_news_rows
from .test_cli import free_port, llm_decide, records, write_jsonl


def test_warm_rerun_asks_the_llm_nothing_default_sqlite(
    thread_emulator, tmp_path, private_cache_dir
) -> None:
    emu, url = thread_emulator
    source = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(120))
    cold, warm = tmp_path / "cold.jsonl", tmp_path / "warm.jsonl"
    assert llm_decide("run", str(source), "-o", str(cold), url=url).returncode == 0
    requests_after_cold = emu.stats.chat_requests
    assert (private_cache_dir / "llm-decide" / "decisions.sqlite3").exists()
    result = llm_decide("run", str(source), "-o", str(warm), url=url)
    assert result.returncode == 0, result.stderr
    assert emu.stats.chat_requests == requests_after_cold  # not one request
    warm_records = {r["id"]: r for r in records(warm)}
    assert {r["source"] for r in warm_records.values()} == {"cache"}
    for record in records(cold):
        assert warm_records[record["id"]]["label"] == record["label"]


def test_changed_task_or_model_misses_entirely(thread_emulator, tmp_path) -> None:
    emu, url = thread_emulator
    emu.config.models = ("llama3.2:3b", "qwen2.5:3b")
    source = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(30))
    task = tmp_path / "task.toml"
    task.write_text(
        'name = "news-topic"\nversion = "2"\ninstructions = "Decide the topic."\n'
        '[[labels]]\nname = "World"\n[[labels]]\nname = "Sports"\n'
        '[[labels]]\nname = "Business"\n[[labels]]\nname = "Sci/Tech"\n'
    )
    for extra in ([], ["--task", str(task)], ["--model", "qwen2.5:3b"]):
        out = tmp_path / "out.jsonl"
        result = llm_decide("run", str(source), "-o", str(out), "--overwrite", *extra, url=url)
        assert result.returncode == 0, result.stderr
        assert {r["source"] for r in records(out)} <= {"batch", "single"}, extra


def test_redis_cache_by_url_then_warm(thread_emulator, redis_server, tmp_path) -> None:
    emu, url = thread_emulator
    source = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(60))
    out = tmp_path / "out.jsonl"
    cache = ["--cache", redis_server.url, "--overwrite"]
    assert llm_decide("run", str(source), "-o", str(out), *cache, url=url).returncode == 0
    before = emu.stats.chat_requests
    assert llm_decide("run", str(source), "-o", str(out), *cache, url=url).returncode == 0
    assert emu.stats.chat_requests == before
    assert {r["source"] for r in records(out)} == {"cache"}


def test_redis_down_at_start_is_exit_2_unless_optional(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    source = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(6))
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    failed = llm_decide("run", str(source), "--cache", redis_url, url=url)
    assert failed.returncode == 2
    assert redis_url in failed.stderr and "--cache-optional" in failed.stderr
    out = tmp_path / "out.jsonl"
    optional = llm_decide(
        "run", str(source), "-o", str(out), "--cache", redis_url, "--cache-optional", url=url
    )
    assert optional.returncode == 0, optional.stderr
    assert "running uncached" in optional.stderr and len(records(out)) == 6


def test_corrupt_sqlite_file_is_exit_2_naming_it(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    source = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(3))
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"garbage" * 1000)
    result = llm_decide("run", str(source), "--cache", f"sqlite://{bad}", url=url)
    assert result.returncode == 2 and str(bad) in result.stderr


def test_unknown_cache_spec_is_exit_2(tmp_path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(3))
    result = llm_decide("run", str(source), "--cache", "memcached://x")
    assert result.returncode == 2 and "unknown cache" in result.stderr
