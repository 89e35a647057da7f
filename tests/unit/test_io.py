from __future__ import annotations

import io
import json

from llm_decide.io import JsonlWriter, read_articles
from llm_decide.models import Article, Decision, ErrorRecord


def read(data: bytes, fmt: str = "jsonl") -> list[Article | ErrorRecord]:
    stream = io.BytesIO(data)
    stream.name = "in.jsonl"  # type: ignore[attr-defined]
    return list(read_articles(stream, fmt=fmt, max_chars=50))  # type: ignore[arg-type]


def errors(items: list) -> dict[str, str]:
    return {i.id: i.error.type for i in items if isinstance(i, ErrorRecord)}


def test_every_bad_line_becomes_an_error_record_and_the_rest_is_read() -> None:
    lines = [
        b'\xef\xbb\xbf{"id": "a", "title": "T", "description": "D", "label": "World", "x": 1}\r\n',
        b"{broken json\n",
        b'{"id": "b"}\n',
        b'{"id": "c", "text": "   "}\n',
        b'{"id": "d", "content": "\xff\xfe bad utf8"}\n',
        b"\n",
        b"[1, 2]\n",
        b'{"id": "a", "text": "again"}\n',
        b'{"id": 7, "text": "numeric id"}\n',
        b'{"id": null, "text": "null id"}\n',
        b'{"id": ["odd"], "text": "list id"}\n',
        b'{"text": "' + b"x" * 80 + b'"}\n',
    ]
    items = read(b"".join(lines))
    assert len(items) == 11  # the blank line is not a record
    assert errors(items) == {
        "line-2": "invalid_json",
        "b": "missing_text",
        "c": "missing_text",
        "line-5": "invalid_utf8",
        "line-7": "invalid_json",
        "a": "duplicate_id",
    }
    first = items[0]
    assert isinstance(first, Article) and first.prompt_text == "T\n\nD"
    assert first.extra == {"label": "World", "x": 1}
    ok = {i.id: i for i in items if isinstance(i, Article)}
    assert set(ok) == {"a", "7", "line-10", "line-11", "line-12"}
    assert ok["line-11"].warnings and "not a string or number" in ok["line-11"].warnings[0]
    assert ok["line-12"].warnings and "first 50" in ok["line-12"].warnings[0]


def test_csv_with_header_and_missing_values() -> None:
    data = b"id,title,description,source\n1,Cup final,The team won,wire\n2,,,wire\n"
    items = read(data, "csv")
    assert isinstance(items[0], Article) and items[0].extra == {"source": "wire"}
    assert errors(items) == {"2": "missing_text"}


def test_csv_without_a_text_column_gives_each_row_a_clear_error() -> None:
    items = read(b"id,url\n1,http://x\n2,http://y\n", "csv")
    assert [i.id for i in items] == ["1", "2"]
    assert all(isinstance(i, ErrorRecord) and i.error.type == "missing_column" for i in items)
    assert "url" in items[0].error.message  # type: ignore[union-attr]


def test_empty_input_gives_nothing() -> None:
    assert read(b"") == [] and read(b"", "csv") == []


def test_writer_writes_one_line_with_passthrough_fields() -> None:
    out = io.BytesIO()
    article = Article(id="a", text="t", extra={"label": "gold", "url": "u"}, warnings=("w",))
    decision = Decision(
        id="a", label="World", confidence=0.5, reason="r", source="batch", model="m"
    )
    writer = JsonlWriter(out, flush_interval=3600)
    writer.write(decision, article)
    assert writer.dirty
    writer.flush()
    record = json.loads(out.getvalue())
    assert record["label"] == "World" and record["input_label"] == "gold" and record["url"] == "u"
    assert record["error"] is None and record["warnings"] == ["w"]
