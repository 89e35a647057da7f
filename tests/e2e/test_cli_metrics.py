"""A scrape of /metrics during a CLI run agrees with --report and with the server."""

from __future__ import annotations

import json
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ag_news_rows
from .test_cli import free_port, llm_decide, records, spawn_run, write_jsonl


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all((k, v) in sample_labels for k, v in labels.items())
    )


def test_scrape_during_a_run_agrees_with_report_and_server(thread_emulator, tmp_path) -> None:
    emu, url = thread_emulator
    emu.config.base_latency = 0.02
    emu.config.faults.rates.update({"drop_item": 0.2, "error_500": 0.1})
    rows = ag_news_rows(240)
    source = write_jsonl(tmp_path / "in.jsonl", rows + rows[:30])  # 30 duplicate ids
    port = free_port()
    report = tmp_path / "report.json"
    process = spawn_run(
        source,
        tmp_path / "o.jsonl",
        url,
        "--metrics-port",
        str(port),
        "--report",
        str(report),
        "--retries",
        "5",
        "--metrics-linger",
        "10",
    )
    during: dict = {}
    deadline = time.monotonic() + 60
    while not report.exists() and time.monotonic() < deadline:
        try:
            sample = scrape(port)
            if not during and total(sample, "llm_decide_requests_total") > 0:
                during = sample
        except OSError:
            pass
        time.sleep(0.05)
    time.sleep(0.2)  # the report is complete once the file is closed
    last = scrape(port)  # --metrics-linger keeps /metrics up after the run
    process.terminate()
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err
    assert during, "no scrape succeeded while the run was going"
    figures = json.loads(report.read_text())
    assert figures["articles"] == 270 and figures["errors"] == {"duplicate_id": 30}
    assert total(last, "llm_decide_requests_total") == figures["requests_total"]
    assert figures["requests_total"] == emu.stats.chat_requests
    assert total(last, "llm_decide_fallbacks_total") == figures["fallbacks"]
    assert total(last, "llm_decide_retries_total") == sum(figures["retries"].values())
    assert total(last, "llm_decide_errors_total", type="duplicate_id") == 30
    assert total(last, "llm_decide_tokens_total", type="prompt") == figures["prompt_tokens"]
    assert total(last, "llm_decide_cache_lookups_total", result="miss") == figures["cache_misses"]
    assert total(during, "llm_decide_requests_total") <= figures["requests_total"]


def test_json_logs_have_the_batch_events(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    rows = ag_news_rows(9)
    result = llm_decide(
        "run",
        str(write_jsonl(tmp_path / "in.jsonl", rows)),
        "-o",
        str(tmp_path / "o.jsonl"),
        "--log-format",
        "json",
        "--log-level",
        "info",
        "--cache",
        "none",
        url=url,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    calls = [e for e in events if e.get("event") == "batch_call"]
    results = [e for e in events if e.get("event") == "batch_result"]
    batch_ids = [i for e in calls for i in e["ids"]]
    decided_in_batches = {r["id"] for r in records(tmp_path / "o.jsonl") if r["source"] == "batch"}
    # (a batch may leave partly filled when the input stalls: those go as single requests)
    assert calls and len(batch_ids) == len(set(batch_ids))
    assert decided_in_batches == set(batch_ids)
    assert sum(e["count"] for e in results) == len(decided_in_batches)
    assert not any(rows[0]["description"][:30] in line for line in result.stderr.splitlines())


def test_report_command_counts_labels_and_errors(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    rows = ag_news_rows(30)
    out = tmp_path / "o.jsonl"
    llm_decide(
        "run",
        str(write_jsonl(tmp_path / "in.jsonl", [*rows, {"id": "x"}])),
        "-o",
        str(out),
        url=url,
    )
    result = llm_decide("report", str(out), "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    labels = {}
    for record in records(out):
        if record["label"]:
            labels[record["label"]] = labels.get(record["label"], 0) + 1
    assert figures["labels"] == dict(sorted(labels.items(), key=lambda kv: -kv[1])) or (
        figures["labels"] == labels
    )
    assert figures["errors"] == {"missing_text": 1} and figures["records"] == 31
