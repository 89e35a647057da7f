"""The bad-input corpus through the CLI: one record per input record, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import llm_decide, records

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"

# file -> (expected records as {id: error type or None for decided}, exit code)
EXPECTED = {
    "malformed.jsonl": (
        {
            "m1": None,
            "m3": None,
            "line-2": "invalid_json",
            "line-3": "invalid_json",
            "line-4": "invalid_json",
            "line-5": "invalid_json",
        },
        1,
    ),
    "no_text.jsonl": (dict.fromkeys(["n1", "n2", "n3", "n4"], "missing_text"), 1),
    "empty_text.jsonl": ({"e1": "missing_text", "e2": "missing_text"}, 1),
    "invalid_utf8.jsonl": ({"u1": None, "line-2": "invalid_utf8", "line-3": "invalid_utf8"}, 1),
    "bom.jsonl": ({"b1": None, "b2": None}, 0),
    "crlf.jsonl": ({"c1": None, "c2": None}, 0),
    "odd_ids.jsonl": (
        {"17": None, "line-2": None, "1.5": None, "line-4": None, "line-5": None, "line-6": None},
        0,
    ),
    "missing_column.csv": ({"1": "missing_column", "2": "missing_column"}, 1),
    "ragged.csv": ({"1": None, "2": None, "3": "missing_text", "4": None}, 1),
    "empty.jsonl": ({}, 0),
    "blank_lines.jsonl": ({}, 0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_input_file(thread_emulator, tmp_path, name: str) -> None:
    _, url = thread_emulator
    expected, code = EXPECTED[name]
    out = tmp_path / "out.jsonl"
    result = llm_decide("run", str(CORPUS / name), "-o", str(out), "--cache", "none", url=url)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    got = {r["id"]: (r["error"] or {}).get("type") for r in records(out)}
    assert got == expected
    assert len(records(out)) == len(expected)  # one record each, no more


def test_duplicate_ids_keep_the_first_and_flag_the_rest(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    out = tmp_path / "out.jsonl"
    result = llm_decide("run", str(CORPUS / "duplicate_ids.jsonl"), "-o", str(out), url=url)
    assert result.returncode == 1
    kinds = sorted((r["id"], (r["error"] or {}).get("type", "")) for r in records(out))
    assert kinds == [("d1", ""), ("d1", "duplicate_id"), ("d1", "duplicate_id"), ("d2", "")]
    assert "duplicate_id" in result.stderr  # the summary counts them


def test_a_5_mb_article_is_cut_with_a_warning(thread_emulator, tmp_path) -> None:
    _, url = thread_emulator
    huge = tmp_path / "huge.jsonl"
    body = ("Business " * 600_000)[: 5 * 1024 * 1024]
    huge.write_text(json.dumps({"id": "huge", "text": body}) + "\n")
    out = tmp_path / "out.jsonl"
    result = llm_decide("run", str(huge), "-o", str(out), url=url)
    assert result.returncode == 0, result.stderr
    (record,) = records(out)
    assert record["label"] == "Business" and "first 4000" in record["warnings"][0]
