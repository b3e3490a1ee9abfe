"""Testing support: the scripted provider and the conformance kit for plugin authors.

``check_storage``, ``check_provider`` and ``check_sandbox`` are async functions usable
without pytest; each raises ``ConformanceFailure`` listing every failed check and
otherwise returns the names of the checks that passed.
"""

from __future__ import annotations

from .._scripted import Reply, ScriptedProvider, ToolCall, echo

__all__ = ["Reply", "ScriptedProvider", "ToolCall", "echo"]
