"""Deterministic, schema-honouring answers for the emulator (pure).

For each ``<article id="...">`` block in the prompt the emulator picks the label
whose name (case-insensitive) occurs most often in that article's text, the
first label in the schema's order on a tie, or a stable hash of the text when no
label is named. So a test knows the right answer for every article, and can
tell whether a batch answer landed on the right one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ArticleInPrompt",
    "answer_for",
    "choose_label",
    "estimate_tokens",
    "find_articles",
    "labels_from_schema",
]

_BLOCK = re.compile(r'<article id=("(?:[^"\\]|\\.)*")>\n(.*?)\n</article>', re.DOTALL)
FALLBACK_LABELS = ("yes", "no")


@dataclass(frozen=True, slots=True)
class ArticleInPrompt:
    id: str
    text: str


def estimate_tokens(text: str) -> int:
    """About four characters a token, as for English with a BPE vocabulary."""
    return max(1, len(text) // 4)


def find_articles(messages: Sequence[Mapping[str, Any]]) -> list[ArticleInPrompt]:
    """Article blocks of the last user message that has any."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if not isinstance(content, str):
            continue
        found = [
            ArticleInPrompt(json.loads(raw_id), text) for raw_id, text in _BLOCK.findall(content)
        ]
        if found:
            return found
    return []


def choose_label(text: str, labels: Sequence[str]) -> tuple[str, int]:
    """The label named most often in ``text`` (and how often), else a stable hash pick."""
    folded = text.casefold()
    best, best_count = labels[0], 0
    for label in labels:
        count = folded.count(label.casefold())
        if count > best_count:
            best, best_count = label, count
    if best_count == 0:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        best = labels[int.from_bytes(digest[:8], "big") % len(labels)]
    return best, best_count


def labels_from_schema(schema: Any) -> list[str]:
    """The label enum of a single or batch decision schema."""
    if not isinstance(schema, dict):
        return list(FALLBACK_LABELS)
    properties = schema.get("properties", {})
    if "decisions" in properties:
        properties = properties["decisions"].get("items", {}).get("properties", {})
    enum = properties.get("label", {}).get("enum")
    return [str(v) for v in enum] if isinstance(enum, list) and enum else list(FALLBACK_LABELS)


def is_batch_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and "decisions" in schema.get("properties", {})


def batch_ids_from_schema(schema: Any) -> list[str] | None:
    try:
        enum = schema["properties"]["decisions"]["items"]["properties"]["id"]["enum"]
    except (KeyError, TypeError):
        return None
    return [str(v) for v in enum] if isinstance(enum, list) else None


def decision_for(text: str, labels: Sequence[str]) -> dict[str, Any]:
    label, count = choose_label(text, labels)
    if count:
        confidence = min(0.99, 0.6 + 0.1 * count)
        reason = f"the text names {label!r} {count} time(s)"
    else:
        confidence = 0.35
        reason = "no label is named in the text; a stable guess"
    return {"label": label, "confidence": round(confidence, 2), "reason": reason}


def answer_for(
    messages: Sequence[Mapping[str, Any]], schema: Any
) -> list[dict[str, Any]] | dict[str, Any]:
    """The right answer: a list of batch items, or one decision object."""
    labels = labels_from_schema(schema)
    articles = find_articles(messages)
    if is_batch_schema(schema):
        texts = {article.id: article.text for article in articles}
        ids = batch_ids_from_schema(schema) or [article.id for article in articles]
        return [
            {"id": article_id} | decision_for(texts.get(article_id, ""), labels)
            for article_id in ids
        ]
    text = articles[0].text if articles else _last_user_text(messages)
    return decision_for(text, labels)


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""
