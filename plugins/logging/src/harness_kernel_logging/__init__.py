"""Log sinks for harness-kernel: ``console`` and ``jsonl``.

Both receive the kernel's structlog records after redaction, each at its own level (set
by the kernel from ``[[logging.sinks]] level``, default the ``[logging] level``)::

    [[logging.sinks]]
    plugin = "console"                  # pretty on a terminal, JSON lines when piped
    level = "warning"

    [[logging.sinks]]
    plugin = "jsonl"
    options = { path = "logs/harness.jsonl", max_bytes = 10485760 }
"""

from __future__ import annotations

from harness_kernel import hookimpl
from harness_kernel.hookspecs import Register

from ._console import ConsoleOptions, ConsoleSink
from ._jsonl import JsonlOptions, JsonlSink

__all__ = ["ConsoleOptions", "ConsoleSink", "JsonlOptions", "JsonlSink", "harness_kernel_log_sinks"]

__version__ = "0.1.0"


@hookimpl
def harness_kernel_log_sinks(register: Register) -> None:
    register("console", ConsoleSink.from_options, options=ConsoleOptions)
    register("jsonl", JsonlSink.from_options, options=JsonlOptions)
