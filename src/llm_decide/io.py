"""Readers (JSONL, CSV, stdin) and the JSONL writer.

Readers never raise on bad input: every record becomes an ``Article`` or an
``ErrorRecord`` naming the line and the problem, so nothing is dropped silently.
Blank lines are not records and are skipped.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from .models import Article, ErrorInfo, ErrorRecord, Outcome

__all__ = [
    "InputFormat",
    "JsonlWriter",
    "WrittenRecords",
    "detect_format",
    "read_articles",
    "record_to_article",
    "scan_output",
    "skip_written",
]

InputFormat = Literal["jsonl", "csv"]
TEXT_FIELDS = ("description", "text", "content")
_CONSUMED = frozenset(("id", "title", *TEXT_FIELDS))
csv.field_size_limit(2**31 - 1)  # long articles are ours to judge, not the csv module's


def detect_format(path: str, explicit: str | None = None) -> InputFormat:
    if explicit in ("jsonl", "csv"):
        return explicit  # type: ignore[return-value]
    return "csv" if path.lower().endswith(".csv") else "jsonl"


def _error(article_id: str, kind: str, message: str) -> ErrorRecord:
    return ErrorRecord(id=article_id, model=None, error=ErrorInfo(type=kind, message=message))


def record_to_article(
    record: Mapping[str, Any], fallback_id: str, where: str, max_chars: int = 0
) -> Article | ErrorRecord:
    """An input object as an Article, or an ErrorRecord saying what is missing."""
    warnings: list[str] = []
    raw_id = record.get("id")
    if raw_id is None or raw_id == "":
        article_id = fallback_id
    elif isinstance(raw_id, str):
        article_id = raw_id
    elif isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
        article_id = str(raw_id)
    else:
        article_id = fallback_id
        warnings.append(f"{where}: id {raw_id!r} is not a string or number; using {fallback_id!r}")
    title = record.get("title")
    title = title.strip() if isinstance(title, str) else ""
    text = ""
    for name in TEXT_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            break
    if not title and not text:
        return _error(
            article_id,
            "missing_text",
            f"{where}: no text to decide; give a non-empty `title`, `description`, `text` "
            "or `content`",
        )
    length = len(title) + len(text)
    if max_chars and length > max_chars:
        warnings.append(
            f"{where}: article has {length} characters; the model sees the first {max_chars}"
        )
    extra = {k: v for k, v in record.items() if k not in _CONSUMED and k is not None}
    return Article(id=article_id, title=title, text=text, extra=extra, warnings=tuple(warnings))


def _jsonl_records(stream: IO[bytes], name: str, max_chars: int) -> Iterator[Article | ErrorRecord]:
    for number, raw in enumerate(stream, start=1):
        fallback_id = f"line-{number}"
        where = f"{name}:{number}"
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield _error(
                    fallback_id,
                    "invalid_utf8",
                    f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start})",
                )
                continue
            try:  # the stdlib accepts what orjson refuses (e.g. integers over 64 bits)
                record = json.loads(line)
            except ValueError as exc:
                yield _error(fallback_id, "invalid_json", f"{where}: not a JSON object ({exc})")
                continue
        if not isinstance(record, dict):
            yield _error(
                fallback_id,
                "invalid_json",
                f"{where}: expected a JSON object, got {type(record).__name__}",
            )
            continue
        yield record_to_article(record, fallback_id, where, max_chars)


def _csv_records(stream: IO[bytes], name: str, max_chars: int) -> Iterator[Article | ErrorRecord]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.DictReader(text)
    if reader.fieldnames is None:
        return
    columns = {c.strip() for c in reader.fieldnames if c}
    no_text_column = not columns & {"title", *TEXT_FIELDS}
    for row in reader:
        number = reader.line_num
        where = f"{name}:{number}"
        values = {(k or "").strip(): v for k, v in row.items() if k is not None}
        if no_text_column:
            # Every row still gets its own record, each naming the real cause.
            raw_id = values.get("id")
            yield _error(
                raw_id if isinstance(raw_id, str) and raw_id else f"line-{number}",
                "missing_column",
                f"{where}: the CSV header has no `title`, `description`, `text` or `content` "
                f"column (it has: {', '.join(sorted(columns)) or 'nothing'})",
            )
            continue
        if any(isinstance(v, str) and _has_surrogates(v) for v in values.values()):
            yield _error(f"line-{number}", "invalid_utf8", f"{where}: not valid UTF-8")
            continue
        yield record_to_article(values, f"line-{number}", where, max_chars)


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_articles(
    source: str | Path | IO[bytes],
    *,
    fmt: InputFormat | None = None,
    max_chars: int = 0,
) -> Iterator[Article | ErrorRecord]:
    """Articles from a path (``-`` is stdin) or a binary stream; duplicate ids become errors."""
    if isinstance(source, str | Path):
        name = str(source)
        fmt = fmt or detect_format(name)
        if name == "-":
            yield from _dedup(_parse(sys.stdin.buffer, "stdin", fmt, max_chars))
            return
        with open(source, "rb") as stream:
            yield from _dedup(_parse(stream, name, fmt, max_chars))
        return
    yield from _dedup(_parse(source, getattr(source, "name", "input"), fmt or "jsonl", max_chars))


def _parse(
    stream: IO[bytes], name: str, fmt: InputFormat, max_chars: int
) -> Iterator[Article | ErrorRecord]:
    return (
        _csv_records(stream, name, max_chars)
        if fmt == "csv"
        else _jsonl_records(stream, name, max_chars)
    )


def _dedup(items: Iterable[Article | ErrorRecord]) -> Iterator[Article | ErrorRecord]:
    """A second article with an id already seen becomes a ``duplicate_id`` error."""
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Article):
            if item.id in seen:
                yield _error(
                    item.id,
                    "duplicate_id",
                    f"id {item.id!r} appeared before in the input; ids must be unique "
                    "(this record was not decided)",
                )
                continue
            seen.add(item.id)
        yield item


class JsonlWriter:
    """One JSON object a line to a binary stream, flushed at least every ``flush_interval`` s.

    Flushing per record costs a system call per article (a third of a warm
    cached run); flushing on a short clock keeps what a crash can lose to the
    last fraction of a second. Call ``flush()`` when the stream goes idle.
    """

    def __init__(self, stream: IO[bytes], *, flush_interval: float = 0.1) -> None:
        self._stream = stream
        self._interval = flush_interval
        self._last_flush = time.monotonic()
        self.dirty = False

    def write(self, outcome: Outcome, article: Article | None = None) -> None:
        record = outcome.to_record(article)
        try:
            line = orjson.dumps(record)
        except TypeError:  # values orjson cannot encode (e.g. integers over 64 bits)
            line = json.dumps(record, ensure_ascii=False).encode()
        self._stream.write(line + b"\n")
        self.dirty = True
        if time.monotonic() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        if self.dirty:
            self._stream.flush()
            self.dirty = False
        self._last_flush = time.monotonic()


@dataclass
class WrittenRecords:
    """What an earlier run already wrote to an output file (for ``--resume``)."""

    #: ids with a record other than a ``duplicate_id`` error.
    ids: set[str] = field(default_factory=set)
    #: ``duplicate_id`` error records written, by id.
    duplicate_ids: Counter[str] = field(default_factory=Counter)
    records: int = 0
    #: Bytes of a torn last line (a crash mid-write) that were cut off.
    repaired_bytes: int = 0
    unreadable_lines: int = 0


def _cut_torn_tail(stream: IO[bytes]) -> int:
    """Truncate after the last newline; returns how many bytes were cut."""
    size = stream.seek(0, io.SEEK_END)
    end = size
    while end > 0:
        start = max(0, end - 65536)
        stream.seek(start)
        block = stream.read(end - start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    if keep < size:
        stream.truncate(keep)
    return size - keep


def scan_output(path: str | Path) -> WrittenRecords:
    """Read the ids an output file holds, repairing a torn last line first."""
    written = WrittenRecords()
    with open(path, "r+b") as stream:
        written.repaired_bytes = _cut_torn_tail(stream)
        stream.seek(0)
        for line in stream:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                article_id = str(record["id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                written.unreadable_lines += 1
                continue
            written.records += 1
            error = record.get("error")
            if isinstance(error, dict) and error.get("type") == "duplicate_id":
                written.duplicate_ids[article_id] += 1
            else:
                written.ids.add(article_id)
    return written


def skip_written(
    items: Iterable[Article | ErrorRecord], written: WrittenRecords
) -> Iterator[Article | ErrorRecord]:
    """The input minus what ``written`` already covers (each input record once)."""
    duplicates_seen: Counter[str] = Counter()
    for item in items:
        if isinstance(item, ErrorRecord) and item.error.type == "duplicate_id":
            duplicates_seen[item.id] += 1
            if duplicates_seen[item.id] <= written.duplicate_ids[item.id]:
                continue
        elif item.id in written.ids:
            continue
        yield item
