"""An Ollama-compatible server for tests, demos and benchmarks."""

from .faults import CONTENT_FAULTS, FAULT_KINDS, TRANSPORT_FAULTS, FaultPlan
from .server import Emulator, EmulatorConfig, EmulatorStats, emulator_in_thread, serve_emulator

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
