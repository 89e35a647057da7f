"""llm-decide: fast, cached, validated LLM decisions about streams of articles, over Ollama."""

from .backends import ChatBackend, ChatResult, HTTPOptions, OllamaBackend
from .cache import CachedDecision, DecisionCache, MemoryCache, cache_key
from .compat import (
    async_get_batch_llm_decision,
    async_get_llm_decision_with_validation,
    async_ollama_chat,
    configure,
    get_batch_llm_decision,
    get_llm_decision_with_validation,
    ollama_chat,
)
from .engine import Decider
from .errors import (
    BackendError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    InputError,
    InvalidAnswer,
    LLMDecideError,
    ModelNotFound,
    ServerBusy,
    TaskError,
)
from .factory import build_backend, build_decider
from .io import read_articles
from .metrics import Events, RunStats
from .models import Article, Decision, ErrorInfo, ErrorRecord, Outcome
from .resilience import RetryPolicy
from .settings import Settings
from .sync import SyncDecider
from .task import DEFAULT_TASK, DecisionTask, Label, load_task

__all__ = [
    "DEFAULT_TASK",
    "Article",
    "BackendError",
    "BackendHTTPError",
    "BackendTimeout",
    "BackendUnavailable",
    "CachedDecision",
    "ChatBackend",
    "ChatResult",
    "ConfigurationError",
    "Decider",
    "Decision",
    "DecisionCache",
    "DecisionTask",
    "ErrorInfo",
    "ErrorRecord",
    "Events",
    "HTTPOptions",
    "InputError",
    "InvalidAnswer",
    "LLMDecideError",
    "Label",
    "MemoryCache",
    "ModelNotFound",
    "OllamaBackend",
    "Outcome",
    "RetryPolicy",
    "RunStats",
    "ServerBusy",
    "Settings",
    "SyncDecider",
    "TaskError",
    "async_get_batch_llm_decision",
    "async_get_llm_decision_with_validation",
    "async_ollama_chat",
    "build_backend",
    "build_decider",
    "cache_key",
    "configure",
    "get_batch_llm_decision",
    "get_llm_decision_with_validation",
    "load_task",
    "ollama_chat",
    "read_articles",
]
