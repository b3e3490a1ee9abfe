"""The conformance kit runs against the kernel's builtin plugins."""

from harness_kernel import MemoryStorage
from harness_kernel._builtins import NoopSandbox
from harness_kernel.testing import (
    Reply,
    ScriptedProvider,
    ToolCall,
    check_provider,
    check_sandbox,
    check_storage,
    run_storage_state_machine,
)


async def test_memory_storage_passes_check_storage() -> None:
    """Every storage contract check passes on the memory backend."""
    passed = await check_storage(MemoryStorage)
    assert "concurrent_appends_at_one_seq_have_exactly_one_winner" in passed


async def test_memory_storage_matches_the_model() -> None:
    """Random operation sequences leave memory storage equal to the in-memory model."""
    await run_storage_state_machine(MemoryStorage, max_examples=25)


def _tools_or_text(request):
    if request.tools:
        return Reply(tool_calls=[ToolCall("lookup", {"q": "trio"})])
    return Reply(text="hello there")


async def test_scripted_provider_passes_check_provider() -> None:
    """The scripted provider streams well-formed events and fails unknown models."""
    await check_provider(lambda: ScriptedProvider({"m": _tools_or_text}), model="m", missing_model="nope")


async def test_noop_sandbox_passes_check_sandbox() -> None:
    """The noop sandbox refuses every operation with SandboxUnavailable."""
    passed = await check_sandbox(NoopSandbox)
    assert passed == [
        "file_operations_are_unavailable",
        "exec_is_unavailable",
        "close_is_idempotent_and_the_workspace_survives_it",
        "destroy_removes_the_workspace",
    ]
