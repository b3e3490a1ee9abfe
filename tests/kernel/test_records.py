"""Records and codec: JSON round trips, schema versions and migrations."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness_kernel import Message, TextPart, ToolCallPart, ToolResultPart, codec
from harness_kernel._records import PAYLOAD_TYPES, RunResult, SessionRecord, Usage
from harness_kernel.errors import StorageError
from harness_kernel.testing import sample_events

json_text = st.text(max_size=40)
scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | json_text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4), max_leaves=10)


def test_every_event_kind_round_trips_through_json() -> None:
    """Each durable event kind survives encode -> JSON text -> decode unchanged."""
    events = sample_events()
    assert {e.type for e in events} >= set(PAYLOAD_TYPES)
    for event in events:
        encoded = codec.encode_event(event)
        assert encoded["schema_version"] == codec.SCHEMA_VERSION
        assert codec.decode_event(json.loads(codec.dumps(encoded))) == event


@given(
    labels=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), json_text, max_size=4),
    state=st.dictionaries(json_text, json_values, max_size=4),
    tokens=st.tuples(*[st.integers(0, 10**9)] * 4),
    seq=st.integers(0, 10**6),
)
def test_session_records_round_trip(labels: dict[str, str], state: dict, tokens: tuple, seq: int) -> None:
    """Any session record survives the codec and JSON text unchanged."""
    record = SessionRecord("s-1", "agent", labels, 1.5, 2.5, "plan", "x/y", state, Usage(*tokens), "idle", seq, 3)
    assert codec.decode_record(json.loads(codec.dumps(codec.encode_record(record)))) == record


def test_run_results_round_trip() -> None:
    """A RunResult with messages and an error survives the codec."""
    events = sample_events()
    messages = tuple(e.payload.message for e in events if e.type == "message.added")
    result = RunResult("s", "r", "failed", "text", messages, messages[1].tool_calls, Usage(1, 2), None, 12.5)
    assert codec.decode_run_result(json.loads(codec.dumps(codec.encode_run_result(result)))) == result


def test_unknown_event_types_survive_as_unknown_payloads() -> None:
    """An event type this kernel does not know is kept, not dropped or misread."""
    raw = {"seq": 4, "type": "plugin.thing", "at": 1.0, "run_id": None, "data": {"x": [1]}, "schema_version": codec.SCHEMA_VERSION}
    event = codec.decode_event(raw)
    assert (event.type, event.payload.data) == ("plugin.thing", {"x": [1]})
    assert codec.encode_event(event) == raw


def test_a_newer_schema_version_is_refused_clearly() -> None:
    """Data written by a newer kernel is refused with a message saying so."""
    raw = codec.encode_record(SessionRecord("s", "a"))
    raw["schema_version"] = codec.SCHEMA_VERSION + 1
    with pytest.raises(StorageError, match="newer than this kernel"):
        codec.decode_record(raw)


def test_migrations_upgrade_older_payloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A payload at an older version goes through the registered migrations in order."""
    monkeypatch.setattr(codec, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(codec, "_migrations", {})

    @codec.register_migration("session_record", 1)
    def rename(payload: dict) -> dict:
        payload["agent"] = payload.pop("agent_name")
        return payload

    @codec.register_migration("session_record", 2)
    def default_mode(payload: dict) -> dict:
        payload.setdefault("mode", "default")
        return payload

    old = {"schema_version": 1, "id": "s", "agent_name": "legacy"}
    record = codec.decode_record(old)
    assert (record.agent, record.mode) == ("legacy", "default")
    with pytest.raises(ValueError, match="already registered"):
        codec.register_migration("session_record", 1)(rename)


def test_a_missing_migration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a migration path, old data is refused rather than misread."""
    monkeypatch.setattr(codec, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(codec, "_migrations", {})
    with pytest.raises(StorageError, match="no migration registered for event v1"):
        codec.decode_event(codec.encode_event(sample_events()[0]) | {"schema_version": 1})


def test_a_tool_message_text_is_its_result_content() -> None:
    """``Message.text`` of a tool message gives what the tool returned (one result per
    line), so ``request.messages[-1].text`` reads the result a scripted model reacts to;
    the other roles still join their text parts."""
    one = Message("tool", (ToolResultPart("c1", "wrote todo.txt"),))
    two = Message("tool", (ToolResultPart("c1", "ok"), ToolResultPart("c2", "boom", is_error=True)))
    assert one.text == "wrote todo.txt"
    assert two.text == "ok\nboom"
    assistant = Message("assistant", (TextPart("Let me "), ToolCallPart("c1", "t", {}), TextPart("see.")))
    assert assistant.text == "Let me see."
