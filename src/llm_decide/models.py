"""The records that flow through llm-decide: Article in, Decision or ErrorRecord out.

Pure: no I/O. Every input article ends as exactly one ``Decision`` or one
``ErrorRecord``; both turn into the same JSON shape with ``to_record()``.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "Article",
    "Decision",
    "ErrorInfo",
    "ErrorRecord",
    "Outcome",
    "Source",
    "normalise_text",
    "text_digest",
]

Source = Literal["cache", "batch", "single"]


def normalise_text(text: str) -> str:
    """Unicode NFC, whitespace runs folded to one space, ends stripped."""
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())  # str.split() folds every Unicode whitespace run


def text_digest(text: str) -> str:
    """SHA-256 hex digest of the normalised text: the article's content key."""
    return hashlib.sha256(normalise_text(text).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class Article:
    """One article to decide.

    >>> Article(id="a1", title="Cup final", text="The team won 2-1.").prompt_text
    'Cup final\\n\\nThe team won 2-1.'

    A slotted dataclass, not a pydantic model: the reader makes one per input
    line, and this is half the cost; the three text fields are still checked.
    """

    id: str
    title: str = ""
    text: str = ""
    #: Other input fields, copied to the output record unchanged.
    extra: dict[str, Any] = field(default_factory=dict)
    #: Problems noticed while reading the article (kept, not fatal).
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (
            isinstance(self.id, str) and isinstance(self.title, str) and isinstance(self.text, str)
        ):
            raise TypeError("Article id, title and text must be strings")

    @property
    def prompt_text(self) -> str:
        """Title and body as the model sees them (before truncation)."""
        if self.title and self.text:
            return f"{self.title}\n\n{self.text}"
        return self.title or self.text

    @property
    def digest(self) -> str:
        return text_digest(self.prompt_text)


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    message: str


class Decision(BaseModel):
    """A validated decision about one article."""

    model_config = ConfigDict(frozen=True)

    id: str
    label: str
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str
    source: Source
    model: str

    @property
    def ok(self) -> bool:
        return True

    def to_record(self, article: Article | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "label": self.label,
            "confidence": self.confidence,
            "reason": self.reason,
            "source": self.source,
            "model": self.model,
            "error": None,
        }
        return _with_article_fields(record, article)


class ErrorRecord(BaseModel):
    """An article that could not be decided, and why."""

    model_config = ConfigDict(frozen=True)

    id: str
    #: None when no model was involved (the input itself was unusable).
    model: str | None
    error: ErrorInfo
    #: The model's last raw answer, when there was one (for debugging).
    raw_answer: str | None = None
    #: The exception behind the record, when there was one (not serialised).
    _exception: BaseException | None = PrivateAttr(default=None)

    @property
    def ok(self) -> bool:
        return False

    @property
    def exception(self) -> BaseException | None:
        return self._exception

    @classmethod
    def from_exception(
        cls,
        article_id: str,
        model: str | None,
        exc: BaseException,
        *,
        raw_answer: str | None = None,
    ) -> ErrorRecord:
        error_type = getattr(exc, "type", None) or type(exc).__name__
        record = cls(
            id=article_id,
            model=model,
            error=ErrorInfo(type=str(error_type), message=str(exc) or type(exc).__name__),
            raw_answer=raw_answer,
        )
        record._exception = exc
        return record

    def to_record(self, article: Article | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "label": None,
            "confidence": None,
            "reason": None,
            "source": None,
            "model": self.model,
            "error": {"type": self.error.type, "message": self.error.message},
        }
        if self.raw_answer is not None:
            record["raw_answer"] = self.raw_answer
        return _with_article_fields(record, article)


Outcome = Decision | ErrorRecord

_RESERVED = frozenset(
    ("id", "label", "confidence", "reason", "source", "model", "error", "raw_answer", "warnings")
)


def _with_article_fields(record: dict[str, Any], article: Article | None) -> dict[str, Any]:
    """Copy the article's pass-through fields; a name we use ourselves gets ``input_``."""
    if article is None:
        return record
    for key, value in article.extra.items():
        record[f"input_{key}" if key in _RESERVED else key] = value
    if article.warnings:
        record["warnings"] = list(article.warnings)
    return record
