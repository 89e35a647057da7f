"""The ``llm-decide`` command: run, check, demo, emulator.

The only place that reads the environment (through Settings) and calls
``asyncio.run()``. Exit codes: 0 every article decided; 1 some articles ended
as error records (all still written); 2 usage or configuration error;
130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import IO, Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from .backends.ollama import OllamaBackend, model_names_match
from .cache.base import DecisionCache
from .cache.memory import MemoryCache
from .cache.select import open_cache
from .emulator.faults import FAULT_KINDS, FaultPlan
from .engine import Decider
from .errors import BackendError, CacheUnavailable, ConfigurationError, ModelNotFound
from .factory import build_backend, build_decider
from .io import (
    JsonlWriter,
    WrittenRecords,
    detect_format,
    read_articles,
    scan_output,
    skip_written,
)
from .logs import configure_logging
from .metrics import Events, PrometheusMetrics, RunStats
from .models import Article, ErrorRecord
from .settings import Settings
from .summary import (
    output_figures,
    print_output_figures,
    print_summary,
    progress_bar,
    show_progress,
    write_report,
)
from .task import load_task

__all__ = ["main"]

EXIT_OK, EXIT_ERRORS, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130

stderr = Console(stderr=True, soft_wrap=True)


class UsageFailure(Exception):
    """A configuration problem: printed as one line with the fix, exit code 2."""


def _settings(**overrides: Any) -> Settings:
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise UsageFailure(f"invalid settings: {problems}") from exc


def _fail(message: str) -> None:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="llm-decide")
def cli() -> None:
    """Fast, cached, validated LLM decisions about streams of articles, over Ollama.

    \b
    Typical use:
      llm-decide check                          # is Ollama up, is the model pulled?
      llm-decide run articles.jsonl -o out.jsonl
      llm-decide demo                           # no Ollama? try it on the built-in emulator
    """


_shared_options = [
    click.option(
        "--ollama-url",
        envvar=None,
        help="Ollama server URL [env OLLAMA_URL; default http://localhost:11434].",
    ),
    click.option("--model", "model_name", help="Model name [env MODEL_NAME; default llama3.2:3b]."),
    click.option(
        "--timeout",
        type=float,
        help="Seconds for one whole request [env LLM_DECIDE_TIMEOUT; default 300].",
    ),
]


def _with_shared(func: Any) -> Any:
    for option in reversed(_shared_options):
        func = option(func)
    return func


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="Where to write one JSONL record per input article.",
)
@click.option(
    "--task",
    "task_file",
    type=click.Path(dir_okay=False),
    help="Task TOML file (labels, instructions); default: news topics.",
)
@_with_shared
@click.option(
    "--batch-size", type=int, help="Articles per request [env LLM_DECIDE_BATCH_SIZE; default 3]."
)
@click.option(
    "--concurrency",
    type=int,
    help="Requests in flight at most; match OLLAMA_NUM_PARALLEL [default 4].",
)
@click.option("--retries", type=int, help="Retries of a transient failure [default 3].")
@click.option(
    "--max-chars", type=int, help="Characters of an article shown to the model [default 4000]."
)
@click.option(
    "--cache",
    "cache_spec",
    metavar="SPEC",
    help="Where validated decisions are kept: none | memory | sqlite | sqlite:///PATH | "
    "redis://HOST:PORT/DB [env LLM_DECIDE_CACHE; else REDIS_URL; else SQLite in the user "
    "cache dir].",
)
@click.option(
    "--cache-ttl",
    type=int,
    help="Seconds a decision is kept [env CACHE_TTL_SECONDS; default 172800 = 48 h].",
)
@click.option(
    "--cache-optional",
    is_flag=True,
    default=None,
    help="Run uncached when the cache cannot be reached at start (default: exit 2).",
)
@click.option(
    "--input-format",
    type=click.Choice(["auto", "jsonl", "csv"]),
    default="auto",
    show_default=True,
    help="auto: .csv files are CSV, everything else JSONL.",
)
@click.option(
    "--no-progress", is_flag=True, help="No progress bar (it is shown only on a terminal anyway)."
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="info shows the batch events (ids, counts, fallbacks); never article text.",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--metrics-port",
    type=int,
    help="Serve Prometheus /metrics on this port while the run lasts.",
)
@click.option(
    "--metrics-addr", default="127.0.0.1", show_default=True, help="Address for --metrics-port."
)
@click.option(
    "--breaker-wait",
    type=float,
    help="Seconds a request waits for a failing server (open circuit) before it becomes an "
    "error record [env LLM_DECIDE_BREAKER_MAX_WAIT; default 60].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Append to OUTPUT and decide only the articles it lacks (the default when OUTPUT exists).",
)
@click.option("--overwrite", is_flag=True, help="Start OUTPUT over even if it exists.")
@click.option(
    "--metrics-linger",
    type=float,
    default=5.0,
    show_default=True,
    help="With --metrics-port: keep /metrics up this long after the run, so a scraper "
    "sees the final counts (0: exit at once).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="Write the run's figures (the summary) as JSON to this file.",
)
def run(
    input_path: str,
    output: str,
    task_file: str | None,
    ollama_url: str | None,
    model_name: str | None,
    timeout: float | None,
    batch_size: int | None,
    concurrency: int | None,
    retries: int | None,
    max_chars: int | None,
    cache_spec: str | None,
    cache_ttl: int | None,
    cache_optional: bool | None,
    input_format: str,
    no_progress: bool,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    metrics_addr: str,
    metrics_linger: float,
    report_path: str | None,
    breaker_wait: float | None,
    resume: bool,
    overwrite: bool,
) -> None:
    """Decide every article in INPUT (JSONL, CSV, or - for stdin).

    \b
    Input: one article per JSONL line (or CSV row): `id` (optional), `title`,
    and `description`, `text` or `content`; other fields are copied to the output.
    Output: one JSON line per input article, in completion order:
      {"id", "label", "confidence", "reason", "source": "cache"|"batch"|"single",
       "model", "error": null | {"type", "message"}}
    Bad input lines become error records; nothing is dropped.

    \b
    Exit codes: 0 all decided, 1 some error records, 2 configuration error, 130 interrupted.
    """
    configure_logging(log_level, log_format, stderr)
    try:
        settings = _settings(
            ollama_url=ollama_url,
            model_name=model_name,
            timeout=timeout,
            batch_size=batch_size,
            concurrency=concurrency,
            retries=retries,
            max_chars=max_chars,
            task_file=task_file,
            cache=cache_spec,
            cache_ttl_seconds=cache_ttl,
            cache_optional=cache_optional,
            breaker_max_wait=breaker_wait,
        )
        task = load_task(settings.task_file) if settings.task_file else None
        if input_path != "-" and not Path(input_path).is_file():
            raise UsageFailure(f"input file {input_path} does not exist")
        cache = open_cache(settings.cache_spec, ttl=settings.cache_ttl_seconds)
        events = Events()
        if metrics_port is not None:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry()
            events = Events(metrics=PrometheusMetrics(registry))
            _serve_metrics(registry, metrics_addr, metrics_port)
        decider = build_decider(settings, cache=cache, task=task, events=events)
        fmt = detect_format(input_path, None if input_format == "auto" else input_format)
        with_progress = not no_progress and stderr.is_terminal
        written = _resume_state(output, resume=resume, overwrite=overwrite)
        with _open_output(output, append=written is not None) as stream:
            code = asyncio.run(
                _run(
                    decider,
                    settings,
                    input_path,
                    fmt,
                    stream,
                    with_progress,
                    report_path,
                    written,
                )
            )
    except (UsageFailure, ConfigurationError) as exc:
        _fail(str(exc))
        sys.exit(EXIT_CONFIG)
    except KeyboardInterrupt:
        _fail("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    if metrics_port is not None and metrics_linger > 0:
        stderr.print(
            f"serving the final metrics on {metrics_addr}:{metrics_port} for "
            f"{metrics_linger:g}s (--metrics-linger 0 to exit at once)"
        )
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(metrics_linger)
    sys.exit(code)


def _resume_state(output: str, *, resume: bool, overwrite: bool) -> WrittenRecords | None:
    """What OUTPUT already holds when this run continues it; None to start afresh."""
    if resume and overwrite:
        raise UsageFailure("--resume and --overwrite contradict each other; pick one")
    if output == "-":
        if resume:
            raise UsageFailure("--resume needs an output file (-o FILE), not stdout")
        return None
    path = Path(output)
    if overwrite or not path.exists() or (path.stat().st_size == 0 and not resume):
        return None
    try:
        written = scan_output(path)
    except OSError as exc:
        raise UsageFailure(f"cannot read {output} to resume: {exc.strerror or exc}") from exc
    stderr.print(
        f"{output} exists with {written.records:,} records: resuming, deciding only the "
        "articles it lacks (--overwrite starts over)"
    )
    if written.repaired_bytes:
        stderr.print(f"repaired {output}: cut a torn last line ({written.repaired_bytes} bytes)")
    if written.unreadable_lines:
        stderr.print(
            f"[yellow]warning:[/] {written.unreadable_lines} line(s) of {output} are not records"
        )
    return written


@contextlib.contextmanager
def _open_output(output: str, *, append: bool = False) -> Iterator[IO[bytes]]:
    if output == "-":
        yield sys.stdout.buffer
        return
    try:
        stream = open(output, "ab" if append else "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageFailure(f"cannot write {output}: {exc.strerror or exc}") from exc
    with stream:
        yield stream


async def _preflight(backend: OllamaBackend) -> None:
    """Fail fast (exit 2) when the server cannot be reached at all."""
    try:
        await backend.version()
    except BackendError as exc:
        if getattr(exc, "status", None) is not None:
            return  # it answered: reachable, even if it has no /api/version
        raise UsageFailure(
            f"cannot reach Ollama at {backend.endpoint}: {exc}. Start it with `ollama serve`, "
            "or point OLLAMA_URL / --ollama-url at it"
        ) from exc


async def _check_cache(cache: DecisionCache | None, settings: Settings) -> None:
    """A Redis that does not answer at start is exit 2, unless the cache is optional."""
    ping = getattr(cache, "ping", None)
    if ping is None:
        return
    try:
        await ping()
    except CacheUnavailable as exc:
        if settings.cache_optional:
            stderr.print(f"[yellow]warning:[/] {exc}; running uncached (--cache-optional)")
            return
        raise UsageFailure(
            f"cannot use the cache: {exc}. Start Redis, fix --cache / REDIS_URL, "
            "or pass --cache-optional (run uncached) or --cache none"
        ) from exc


def _count_lines(path: str) -> int | None:
    if path == "-":
        return None
    with open(path, "rb") as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))


async def _run(
    decider: Decider,
    settings: Settings,
    input_path: str,
    fmt: Any,
    stream: IO[bytes],
    with_progress: bool,
    report_path: str | None = None,
    written: WrittenRecords | None = None,
) -> int:
    writer = JsonlWriter(stream)
    stats: RunStats = decider.events.stats
    started = time.perf_counter()
    async with decider:
        await _check_cache(decider.cache, settings)
        if isinstance(decider.backend, OllamaBackend):
            await _preflight(decider.backend)
        articles: Iterable[Article | ErrorRecord] = read_articles(
            input_path, fmt=fmt, max_chars=settings.max_chars
        )
        if written is not None:
            articles = skip_written(articles, written)
        progress = progress_bar(stderr) if with_progress else None
        total = _count_lines(input_path) if progress else None
        task_id = progress.add_task("deciding", total=total, stats="") if progress else None
        # Ctrl-C / SIGTERM: stop deciding, keep what is written, summarise, exit 130.
        interrupted = False
        this_task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def interrupt() -> None:
            nonlocal interrupted
            interrupted = True
            if this_task is not None:
                this_task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupt)
        try:
            with progress or contextlib.nullcontext():
                shown, last_shown = 0, 0.0
                async for pairs in decider.decide_stream_chunks(articles):
                    for article, outcome in pairs:
                        writer.write(outcome, article)
                    writer.flush()  # a batch at a time: a crash loses only what is in flight
                    if progress is not None and task_id is not None:
                        now = time.monotonic()
                        if now - last_shown >= 0.1:  # a redraw per article would cost more
                            show_progress(progress, task_id, stats, stats.outcomes - shown, started)
                            shown, last_shown = stats.outcomes, now
                if progress is not None and task_id is not None:
                    show_progress(progress, task_id, stats, stats.outcomes - shown, started)
        except asyncio.CancelledError:
            if not interrupted:
                raise
            if this_task is not None:
                this_task.uncancel()
        except ModelNotFound as exc:
            raise UsageFailure(str(exc)) from exc
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            writer.flush()
    elapsed = time.perf_counter() - started
    print_summary(stderr, stats, elapsed, decider)
    if written is not None:
        stderr.print(f"resumed: {written.records:,} records were already in the output")
    if report_path:
        try:
            write_report(report_path, stats, elapsed, decider)
        except OSError as exc:
            _fail(f"cannot write the report {report_path}: {exc.strerror or exc}")
    if interrupted:
        _fail("interrupted: what is written is kept; run again to resume")
        return EXIT_INTERRUPTED
    return EXIT_ERRORS if stats.errors else EXIT_OK


def _serve_metrics(registry: Any, addr: str, port: int) -> None:
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise UsageFailure(
            f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}; pick another "
            "--metrics-port"
        ) from exc


@cli.command()
@_with_shared
def check(ollama_url: str | None, model_name: str | None, timeout: float | None) -> None:
    """Is Ollama reachable, which version, is the model pulled? Exit 0 if so, else 2."""
    try:
        settings = _settings(ollama_url=ollama_url, model_name=model_name, timeout=timeout)
    except UsageFailure as exc:
        _fail(str(exc))
        sys.exit(EXIT_CONFIG)
    sys.exit(asyncio.run(_check(settings)))


async def _check(settings: Settings) -> int:
    backend = build_backend(settings)
    try:
        try:
            version = await backend.version()
        except BackendError as exc:
            _fail(f"cannot reach Ollama at {settings.ollama_url}: {exc}")
            stderr.print("fix: start it with `ollama serve`, or set OLLAMA_URL / --ollama-url")
            return EXIT_CONFIG
        stderr.print(
            f"[green]ok[/] Ollama at {settings.ollama_url} answers (version {version or 'unknown'})"
        )
        try:
            models = await backend.list_models()
        except BackendError as exc:
            _fail(f"cannot list models: {exc}")
            return EXIT_CONFIG
        if any(model_names_match(settings.model_name, name) for name in models):
            stderr.print(f"[green]ok[/] model {settings.model_name} is pulled")
            return EXIT_OK
        _fail(
            f"model {settings.model_name} is not pulled (available: {', '.join(models) or 'none'})"
        )
        stderr.print(
            f"fix: `ollama pull {settings.model_name}`, or choose one with --model / MODEL_NAME"
        )
        return EXIT_CONFIG
    finally:
        await backend.aclose()


def _fault_plan(faults: tuple[str, ...], seed: int) -> FaultPlan:
    """``KIND=RATE`` options as a seeded FaultPlan; bad ones are usage errors."""
    rates: dict[str, float] = {}
    for spec in faults:
        kind, _, rate = spec.partition("=")
        try:
            rates[kind] = float(rate)
        except ValueError:
            raise click.BadParameter(
                f"{spec!r}: use KIND=RATE, e.g. error_500=0.1", param_hint="--fault"
            ) from None
    try:
        return FaultPlan(rates=rates, seed=seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=11434, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--slots",
    default=1,
    show_default=True,
    type=int,
    help="Parallel slots, like OLLAMA_NUM_PARALLEL.",
)
@click.option(
    "--latency",
    default=0.5,
    show_default=True,
    type=float,
    help="Seconds per request in a slot (fixed part).",
)
@click.option(
    "--per-prompt-token",
    default=0.0,
    show_default=True,
    type=float,
    help="Extra seconds per prompt token.",
)
@click.option(
    "--per-output-token",
    default=0.0,
    show_default=True,
    type=float,
    help="Extra seconds per output token.",
)
@click.option(
    "--shuffle/--no-shuffle",
    default=True,
    show_default=True,
    help="Return batch items in random order.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--hang-seconds",
    default=3600.0,
    show_default=True,
    type=float,
    help="How long a `hang` fault holds a request.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Model names it serves (repeatable) [default llama3.2:3b].",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="KIND=RATE",
    help=f"Inject a fault at a rate 0..1 (repeatable). Kinds: {', '.join(FAULT_KINDS)}.",
)
def emulator(
    host: str,
    port: int,
    slots: int,
    latency: float,
    per_prompt_token: float,
    per_output_token: float,
    shuffle: bool,
    seed: int,
    hang_seconds: float,
    models: tuple[str, ...],
    faults: tuple[str, ...],
) -> None:
    """Serve an Ollama-compatible emulator (for tests, demos and benchmarks).

    It answers every article with the label named most often in its text, so
    results are checkable. Stop it with Ctrl-C.
    """
    from .emulator.server import EmulatorConfig, serve_emulator  # aiohttp.web: only here

    config = EmulatorConfig(
        models=models or ("llama3.2:3b",),
        slots=slots,
        base_latency=latency,
        per_prompt_token=per_prompt_token,
        per_output_token=per_output_token,
        shuffle=shuffle,
        hang_seconds=hang_seconds,
        faults=_fault_plan(faults, seed),
    )

    async def serve() -> None:
        async with serve_emulator(config, host=host, port=port) as (_, url):
            click.echo(
                f"Ollama emulator listening on {url} ({slots} slot(s), {latency}s latency)",
                err=True,
            )
            sys.stderr.flush()
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


@cli.command()
@click.argument("input_path", metavar="[INPUT]", required=False, type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Also write the JSONL records here."
)
@click.option("--slots", default=4, show_default=True, type=int)
@click.option("--latency", default=0.2, show_default=True, type=float)
def demo(input_path: str | None, output: str | None, slots: int, latency: float) -> None:
    """Try llm-decide without Ollama: decide sample articles on the built-in EMULATOR.

    The emulator is not a language model: it picks the label named most often in
    each article (or a stable guess), with realistic latency and parallel slots.
    Point `llm-decide run` at a real Ollama for real decisions.
    """
    from .emulator.server import EmulatorConfig, emulator_in_thread

    config = EmulatorConfig(slots=slots, base_latency=latency, shuffle=True)
    sample = resources.files("llm_decide") / "data" / "sample_articles.jsonl"
    with resources.as_file(sample) as sample_path, emulator_in_thread(config) as (_, url):
        path = input_path or str(sample_path)
        stderr.print(
            f"[bold yellow]DEMO:[/] deciding {path} on the built-in Ollama [bold]emulator[/] "
            f"at {url} "
            f"({slots} slots, {latency}s per request) - not a real model."
        )
        settings = _settings(ollama_url=url, concurrency=slots)
        decider = build_decider(settings, cache=MemoryCache(), events=Events())
        out_stream = open(output, "wb") if output else None  # noqa: SIM115
        try:
            code = asyncio.run(_demo(decider, settings, path, out_stream))
        finally:
            if out_stream is not None:
                out_stream.close()
    sys.exit(code)


async def _demo(
    decider: Decider, settings: Settings, path: str, out_stream: IO[bytes] | None
) -> int:
    writer = JsonlWriter(out_stream) if out_stream else None
    table = Table(title="first decisions (emulator)")
    for column in ("id", "label", "conf.", "source", "gold label"):
        table.add_column(column)
    started = time.perf_counter()
    agree = total = 0
    async with decider:
        articles = read_articles(path, fmt=detect_format(path), max_chars=settings.max_chars)
        with progress_bar(stderr) as progress:
            task_id = progress.add_task("deciding", total=_count_lines(path), stats="")
            async for article, outcome in decider.decide_stream(articles):
                if writer:
                    writer.write(outcome, article)
                record = outcome.to_record(article)
                gold = record.get("input_label")
                total += 1
                agree += gold is not None and gold == record["label"]
                if len(table.rows) < 10:
                    table.add_row(
                        record["id"],
                        str(record["label"]),
                        str(record["confidence"]),
                        str(record["source"]),
                        str(gold or ""),
                    )
                progress.update(task_id, advance=1)
    stderr.print(table)
    print_summary(stderr, decider.events.stats, time.perf_counter() - started, decider)
    stderr.print(
        f"label agrees with the AG News gold label for {agree}/{total} "
        "(the emulator only counts label names)"
    )
    return EXIT_ERRORS if decider.events.stats.errors else EXIT_OK


@cli.command()
@click.argument("output", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def report(output: str, as_json: bool) -> None:
    """Label distribution and error counts of a finished OUTPUT.jsonl."""
    figures = output_figures(output)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    print_output_figures(Console(), output, figures)
    if figures["unreadable_lines"]:
        stderr.print(f"[yellow]warning:[/] {figures['unreadable_lines']} line(s) are not JSON")


def main() -> None:
    # A run allocates a few short-lived objects per article; with the default
    # thresholds the cyclic GC rescans the long-lived ones thousands of times
    # (a third of a warm cached run). Freeze what start-up made, collect less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    cli(prog_name="llm-decide")


if __name__ == "__main__":
    main()
