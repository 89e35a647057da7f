"""An Ollama-compatible server for tests, demos and benchmarks.

The server (and aiohttp.web) is imported on first use, so the CLI starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .faults import CONTENT_FAULTS, FAULT_KINDS, TRANSPORT_FAULTS, FaultPlan

if TYPE_CHECKING:
    from .server import (
        Emulator,
        EmulatorConfig,
        EmulatorStats,
        emulator_in_thread,
        serve_emulator,
    )

__all__ = [
    "CONTENT_FAULTS",
    "FAULT_KINDS",
    "TRANSPORT_FAULTS",
    "Emulator",
    "EmulatorConfig",
    "EmulatorStats",
    "FaultPlan",
    "emulator_in_thread",
    "serve_emulator",
]

_SERVER_NAMES = {
    "Emulator",
    "EmulatorConfig",
    "EmulatorStats",
    "emulator_in_thread",
    "serve_emulator",
}


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
