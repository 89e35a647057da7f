"""How llm-decide talks to LLM servers: one module per protocol."""

from .base import ChatBackend, ChatResult, HTTPOptions
from .ollama import OllamaBackend

__all__ = ["ChatBackend", "ChatResult", "HTTPOptions", "OllamaBackend"]
