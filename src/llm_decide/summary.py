"""What a run prints and saves: the progress bar, the summary, the report file,
and the figures of a finished output file. Rendering only; no deciding here.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .engine import Decider
from .metrics import RunStats

__all__ = [
    "output_figures",
    "print_output_figures",
    "print_summary",
    "progress_bar",
    "show_progress",
    "write_report",
]


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
    )


def show_progress(
    progress: Progress, task_id: Any, stats: RunStats, advance: int, started: float
) -> None:
    elapsed = max(time.perf_counter() - started, 1e-9)
    progress.update(
        task_id,
        advance=advance,
        stats=f"{stats.outcomes / elapsed:,.0f}/s  cache {stats.cache_hits}  "
        f"fallbacks {stats.fallbacks}  errors {sum(stats.errors.values())}",
    )


def print_summary(console: Console, stats: RunStats, elapsed: float, decider: Decider) -> None:
    figures = stats.as_dict()
    table = Table(
        title=f"llm-decide: {decider.model} on {decider.backend.endpoint}", show_header=False
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    rate = stats.outcomes / elapsed if elapsed > 0 else 0.0
    table.add_row("articles", f"{stats.outcomes:,}  ({rate:,.1f}/s in {elapsed:,.1f}s)")
    table.add_row("decided", f"{stats.decided:,}  " + _fmt_counts(stats.sources))
    table.add_row("errors", f"{sum(stats.errors.values()):,}  " + _fmt_counts(stats.errors))
    if stats.warnings:
        table.add_row("articles with warnings", f"{stats.warnings:,}")
    cache_line = f"{stats.cache_hits:,}  ({stats.cache_hit_ratio:.0%} of lookups)"
    if stats.cache_errors:
        cache_line += (
            f"  cache errors {stats.cache_errors:,}, not stored {stats.cache_writes_skipped:,}"
        )
    table.add_row("cache hits", cache_line)
    if stats.deduplicated:
        table.add_row("identical articles shared", f"{stats.deduplicated:,}")
    table.add_row("requests", f"{stats.total_requests:,}  " + _fmt_counts(stats.requests))
    table.add_row("fallbacks / re-asks", f"{stats.fallbacks:,} / {stats.reasks:,}")
    table.add_row("retries", f"{sum(stats.retries.values()):,}  " + _fmt_counts(stats.retries))
    table.add_row(
        "tokens (prompt / completion)", f"{stats.prompt_tokens:,} / {stats.completion_tokens:,}"
    )
    table.add_row(
        "request latency p50 / p95 / p99",
        f"{figures['request_seconds_p50']:.3f} / {figures['request_seconds_p95']:.3f} / "
        f"{figures['request_seconds_p99']:.3f} s",
    )
    console.print(table)
    if stats.outcomes == 0:
        console.print("[yellow]warning:[/] the input held no articles")


def _fmt_counts(counts: Any) -> str:
    return "(" + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) + ")" if counts else ""


def write_report(path: str, stats: RunStats, elapsed: float, decider: Decider) -> None:
    """The summary's figures as JSON; raises OSError when the file cannot be written."""
    report = {
        "model": decider.model,
        "endpoint": decider.backend.endpoint,
        "elapsed_seconds": round(elapsed, 3),
        "articles_per_second": round(stats.outcomes / elapsed, 2) if elapsed > 0 else 0.0,
        **stats.as_dict(),
    }
    Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def output_figures(path: str) -> dict[str, Any]:
    """Label distribution, sources and error counts of an output file."""
    labels: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    unreadable = 0
    with open(path, "rb") as stream:
        for line in stream:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                unreadable += 1  # e.g. a line torn by a crash
                continue
            error = record.get("error") if isinstance(record, dict) else None
            if isinstance(error, dict):
                errors[str(error.get("type"))] += 1
            elif isinstance(record, dict):
                labels[str(record.get("label"))] += 1
                sources[str(record.get("source"))] += 1
    records = sum(labels.values()) + sum(errors.values())
    return {
        "records": records,
        "decided": sum(labels.values()),
        "labels": dict(labels.most_common()),
        "sources": dict(sources),
        "errors": dict(errors.most_common()),
        "unreadable_lines": unreadable,
    }


def print_output_figures(console: Console, path: str, figures: dict[str, Any]) -> None:
    records = figures["records"]
    table = Table(title=f"{path}: {records:,} records")
    table.add_column("label")
    table.add_column("articles", justify="right")
    table.add_column("share", justify="right")
    for label, count in figures["labels"].items():
        table.add_row(label, f"{count:,}", f"{count / max(1, records):.1%}")
    for kind, count in figures["errors"].items():
        table.add_row(f"[red]error: {kind}[/]", f"{count:,}", f"{count / max(1, records):.1%}")
    console.print(table)
