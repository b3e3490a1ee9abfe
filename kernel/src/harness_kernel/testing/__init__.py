"""Testing support: the scripted provider and the conformance kit for plugin authors.

``check_storage``, ``check_provider`` and ``check_sandbox`` are async functions usable
without pytest (``trio.run(check_storage, MyStorage)``); each raises
``ConformanceFailure`` listing every failed check and otherwise returns the names of the
checks that passed. ``run_storage_state_machine`` (needs hypothesis) checks a storage
against an in-memory model with random operation sequences. ``trio_lease_clock``
makes leases follow trio's clock, so a test under ``MockClock`` can expire them.
"""

from __future__ import annotations

from .._scripted import Reply, ScriptedProvider, ToolCall, echo
from ._clock import trio_lease_clock
from ._provider import check_provider
from ._report import ConformanceFailure
from ._sandbox import check_sandbox
from ._storage import check_storage, run_storage_state_machine, sample_events

__all__ = [
    "ConformanceFailure",
    "Reply",
    "ScriptedProvider",
    "ToolCall",
    "check_provider",
    "check_sandbox",
    "check_storage",
    "echo",
    "run_storage_state_machine",
    "sample_events",
    "trio_lease_clock",
]
