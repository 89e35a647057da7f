"""One exception tree for everything llm-decide raises.

    LLMDecideError
    ├── ConfigurationError            bad settings, unreadable task file, ...
    │   └── TaskError                 a task file that cannot be used
    ├── InputError                    an article that cannot be decided (no text, bad JSON, ...)
    ├── InvalidAnswer                 the model answered, but not with a valid decision
    ├── CacheUnavailable              the cache cannot be read or written right now
    └── BackendError                  talking to the LLM server failed
        ├── ModelNotFound (404)       the model is not pulled on the server (fatal for a run)
        ├── BackendHTTPError          any other HTTP error status (5xx are transient)
        │   └── ServerBusy (503)      Ollama's "maximum pending requests exceeded"
        ├── BackendTimeout            also a builtin TimeoutError
        └── BackendUnavailable        connection refused / reset; also a builtin ConnectionError
            └── CircuitOpen           the endpoint kept failing; we stopped waiting for it

Every class has a stable snake_case ``type``; it is what output records carry in
``error.type``, so scripts can count failures without parsing messages.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendHTTPError",
    "BackendTimeout",
    "BackendUnavailable",
    "CacheUnavailable",
    "CircuitOpen",
    "ConfigurationError",
    "InputError",
    "InvalidAnswer",
    "LLMDecideError",
    "ModelNotFound",
    "ServerBusy",
    "TaskError",
]


class LLMDecideError(Exception):
    """Base of every error llm-decide raises."""

    type = "error"
    #: Whether retrying the same request later may succeed.
    transient = False


class ConfigurationError(LLMDecideError):
    """Settings that cannot work (bad URL, bad option, unreadable file)."""

    type = "configuration_error"


class TaskError(ConfigurationError):
    """A task definition that cannot be used."""

    type = "task_error"


class InputError(LLMDecideError):
    """An input record that cannot be decided; ``type`` names the reason."""

    type = "invalid_input"

    def __init__(self, message: str, *, type: str = "invalid_input") -> None:
        super().__init__(message)
        self.type = type


class InvalidAnswer(LLMDecideError):
    """The model's answer is not a valid decision (bad JSON, unknown label, ...)."""

    type = "invalid_answer"

    def __init__(self, message: str, *, content: str | None = None) -> None:
        super().__init__(message)
        #: The raw answer, kept so users can see what the model said.
        self.content = content


class CacheUnavailable(LLMDecideError):
    """The cache failed (Redis down, SQLite locked); runs carry on uncached."""

    type = "cache_unavailable"
    transient = True


class BackendError(LLMDecideError):
    """Talking to the LLM server failed."""

    type = "backend_error"

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class BackendHTTPError(BackendError):
    """The server answered with an error status; 5xx, 408 and 429 are transient."""

    type = "backend_http_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.retry_after = retry_after
        self.transient = status >= 500 or status in (408, 429)


class ServerBusy(BackendHTTPError):
    """HTTP 503: the server's queue is full; back off and retry."""

    type = "server_busy"


class ModelNotFound(BackendHTTPError):
    """HTTP 404 for the model: it is not pulled on that server."""

    type = "model_not_found"

    def __init__(self, model: str, *, url: str | None = None) -> None:
        where = f" on {url}" if url else ""
        super().__init__(
            f"model {model!r} is not available{where}; pull it with `ollama pull {model}` "
            "or choose another with --model / MODEL_NAME",
            status=404,
            url=url,
        )
        self.model = model
        self.transient = False


class BackendTimeout(BackendError, TimeoutError):
    """No complete answer within the configured timeout."""

    type = "backend_timeout"
    transient = True


class BackendUnavailable(BackendError, ConnectionError):
    """The server could not be reached or dropped the connection."""

    type = "backend_unavailable"
    transient = True


class CircuitOpen(BackendUnavailable):
    """The circuit breaker stayed open longer than we were willing to wait."""

    type = "backend_unavailable"
    transient = False  # retrying now would only wait again
