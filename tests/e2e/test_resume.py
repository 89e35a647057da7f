"""Crashes and interruptions lose nothing, and a resumed run never re-asks finished work."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from ..conftest import ag_news_rows
from .test_cli import llm_decide, records, spawn_run, write_jsonl


def start_run(source: Path, out: Path, url: str) -> subprocess.Popen[str]:
    return spawn_run(source, out, url, "--concurrency", "2")


def complete_ids(out: Path) -> list[str]:
    """Ids of the whole lines in the file (a torn last line does not count)."""
    if not out.exists():
        return []
    ids = []
    for line in out.read_bytes().split(b"\n")[:-1]:
        ids.append(json.loads(line)["id"])
    return ids


def test_sigkill_at_random_points_then_resume_loses_nothing(thread_emulator, tmp_path) -> None:
    emu, url = thread_emulator
    emu.config.slots, emu.config.base_latency = 2, 0.03
    rows = ag_news_rows(450)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    rng = random.Random(42)
    for _ in range(3):
        before_ids = set(complete_ids(out))
        seen_before = Counter(emu.stats.articles_seen)
        process = start_run(source, out, url)
        # Kill at a random point once this run has written something of its own.
        deadline = time.monotonic() + 30
        while len(complete_ids(out)) <= len(before_ids) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        resent = {i for i in before_ids if emu.stats.articles_seen[i] > seen_before[i]}
        assert not resent, f"a resumed run asked again for {len(resent)} written articles"
    before_ids = set(complete_ids(out))
    assert 0 < len(before_ids) < len(rows)  # the kills did land mid-run
    seen_before = Counter(emu.stats.articles_seen)
    final = llm_decide("run", str(source), "-o", str(out), url=url)
    assert final.returncode == 0, final.stderr
    assert "resuming" in final.stderr
    assert not {i for i in before_ids if emu.stats.articles_seen[i] > seen_before[i]}
    ids = [r["id"] for r in records(out)]
    assert sorted(ids) == sorted(r["id"] for r in rows)  # every id exactly once


def test_a_torn_last_line_is_repaired(thread_emulator, tmp_path) -> None:
    emu, url = thread_emulator
    rows = ag_news_rows(6)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    done = [
        {
            "id": r["id"],
            "label": "World",
            "confidence": 1.0,
            "reason": "earlier run",
            "source": "batch",
            "model": "llama3.2:3b",
            "error": None,
        }
        for r in rows[:2]
    ]
    out.write_text("".join(json.dumps(d) + "\n" for d in done) + '{"id": "' + rows[2]["id"])
    result = llm_decide("run", str(source), "-o", str(out), url=url)
    assert result.returncode == 0, result.stderr
    assert "torn last line" in result.stderr
    got = records(out)
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in rows)
    assert [r["reason"] for r in got[:2]] == ["earlier run", "earlier run"]
    assert emu.stats.articles_seen[rows[0]["id"]] == 0  # not asked again


def test_ctrl_c_stops_gracefully_and_the_run_resumes(thread_emulator, tmp_path) -> None:
    emu, url = thread_emulator
    emu.config.slots, emu.config.base_latency = 1, 0.05
    rows = ag_news_rows(300)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    process = start_run(source, out, url)
    deadline = time.monotonic() + 20
    while len(complete_ids(out)) < 15 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "interrupted" in err and "articles" in err  # the summary was printed
    partial = complete_ids(out)
    assert 15 <= len(partial) < len(rows) and len(set(partial)) == len(partial)
    final = llm_decide("run", str(source), "-o", str(out), url=url)
    assert final.returncode == 0, final.stderr
    assert sorted(r["id"] for r in records(out)) == sorted(r["id"] for r in rows)


def test_overwrite_starts_over_and_resume_needs_a_file(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    source = write_jsonl(tmp_path / "in.jsonl", ag_news_rows(3))
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "stale", "label": "World"}\n')
    result = llm_decide("run", str(source), "-o", str(out), "--overwrite", url=url)
    assert result.returncode == 0
    assert "stale" not in out.read_text() and len(records(out)) == 3
    bad = llm_decide("run", str(source), "--resume", url=url)
    assert bad.returncode == 2 and "--resume needs an output file" in bad.stderr
