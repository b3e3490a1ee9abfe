"""Reasoning, image and file parts: built with their rules, persisted through the codec
and every storage backend unchanged, and events stored before they existed still read."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness_kernel import (
    MAX_INLINE_BYTES,
    FilePart,
    ImagePart,
    MemoryStorage,
    Message,
    ReasoningPart,
    SessionStorage,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    codec,
)
from harness_kernel._records import (
    Event,
    MessageAdded,
    RunResult,
    SessionRecord,
    Usage,
    UsageRecorded,
)
from harness_kernel_file import FileStorage
from harness_kernel_s3 import S3Options
from harness_kernel_s3 import build as build_s3
from harness_kernel_sqlite import SqliteStorage
from tests.s3.conftest import aws_environment, bucket, moto_endpoint

__all__ = ["aws_environment", "bucket", "moto_endpoint"]

maybe_text = st.none() | st.text(max_size=30)
reasoning_parts = st.builds(
    ReasoningPart,
    text=st.text(max_size=60),
    summary=st.booleans(),
    signature=maybe_text,
    encrypted=maybe_text,
    redacted=st.booleans(),
    id=maybe_text,
    source=st.none() | st.sampled_from(["anthropic", "openai-responses"]),
)
media_types = st.sampled_from(["image/png", "image/jpeg", "image/webp", "application/pdf", "text/plain"])


def _media(cls: type[Any], **extra: Any) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(cls, media_type=media_types, data=st.binary(max_size=300), **extra),
        st.builds(cls, media_type=st.just("") | media_types, url=st.text(min_size=1, max_size=40), **extra),
        st.builds(cls, media_type=st.just("") | media_types, ref=st.text(min_size=1, max_size=40), **extra),
    )


new_parts = st.one_of(reasoning_parts, _media(ImagePart), _media(FilePart, name=maybe_text))
messages = st.builds(
    Message,
    role=st.sampled_from(["user", "assistant"]),
    parts=st.lists(new_parts | st.builds(TextPart, st.text(max_size=20)), min_size=1, max_size=5),
    id=st.just("msg_1"),
    created_at=st.just(1.5),
)


@given(message=messages)
def test_every_new_part_round_trips_through_the_codec_and_json(message: Message) -> None:
    """A message holding any mix of reasoning, image, file and text parts comes back equal
    from encode -> JSON text -> decode; inline bytes are stored as base64 text."""
    event = Event(7, MessageAdded(message), at=3.0, run_id="run_1")
    encoded = json.loads(codec.dumps(codec.encode_event(event)))
    assert codec.decode_event(encoded) == event
    for part, raw in zip(message.parts, encoded["data"]["message"]["parts"], strict=True):
        if isinstance(part, ImagePart | FilePart) and part.data is not None:
            assert isinstance(raw["data"], str)


def _sqlite(tmp_path: Path) -> Callable[[], SessionStorage]:
    return lambda: SqliteStorage(str(tmp_path / "parts.db"))


BACKENDS = ["memory", "file", "sqlite", "s3"]


@pytest.fixture(params=BACKENDS)
def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SessionStorage]:
    if request.param == "memory":
        shared = MemoryStorage()
        return lambda: shared
    if request.param == "file":
        return lambda: FileStorage(tmp_path / "files")
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    endpoint, name = request.getfixturevalue("moto_endpoint"), request.getfixturevalue("bucket")
    return lambda: build_s3(S3Options(bucket=name, endpoint_url=endpoint, region="us-east-1", base_delay_ms=10))


@pytest.mark.parametrize("examples", [20])
def test_every_new_part_round_trips_through_every_backend(make_storage: Callable[[], SessionStorage], examples: int) -> None:
    """Appending a message with any mix of new parts and reading it back gives it unchanged,
    on memory, file, SQLite and S3 (moto) storage."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(message=messages, usage=st.tuples(*[st.integers(0, 10**6)] * 5))
    def round_trip(message: Message, usage: tuple[int, int, int, int, int]) -> None:
        async def main() -> None:
            storage = make_storage()
            session_id = f"parts-{secrets.token_hex(6)}"
            await storage.create(SessionRecord(session_id, "agent", usage=Usage(*usage)))
            events = [Event(1, MessageAdded(message), at=2.0), Event(2, UsageRecorded(Usage(*usage), "m/x"), at=3.0)]
            await storage.append(session_id, events, expected_seq=0)
            assert await storage.read(session_id) == events
            record = await storage.load(session_id)
            assert record is not None
            assert record.usage == Usage(*usage)
            if not isinstance(storage, MemoryStorage):
                await storage.aclose()

        trio.run(main)

    round_trip()


# -- parts are built with their rules ----------------------------------------------


def test_inline_content_over_the_limit_is_refused_when_the_part_is_built() -> None:
    """An image or file larger than MAX_INLINE_BYTES is refused at once, naming the size
    and the limit; exactly at the limit it is accepted."""
    ImagePart("image/png", b"\0" * MAX_INLINE_BYTES)
    for cls in (ImagePart, FilePart):
        with pytest.raises(ValueError, match=rf"{MAX_INLINE_BYTES + 1} bytes, the limit is {MAX_INLINE_BYTES} bytes"):
            cls("image/png", b"\0" * (MAX_INLINE_BYTES + 1))


def test_a_media_part_takes_exactly_one_source() -> None:
    """data, url and ref are alternatives: none, or two at once, is refused; inline data
    needs a media type."""
    with pytest.raises(ValueError, match="exactly one of data, url or ref"):
        ImagePart("image/png")
    with pytest.raises(ValueError, match="got data, url"):
        FilePart("application/pdf", b"x", url="https://example.invalid/a.pdf")
    with pytest.raises(ValueError, match="needs a media_type"):
        ImagePart(data=b"x")
    assert ImagePart(url="https://example.invalid/cat.png").media_type == ""


def test_text_is_the_visible_text_only() -> None:
    """``message.text`` joins the text parts; reasoning, images and files are not in it,
    and ``message.reasoning`` lists the reasoning parts."""
    thought = ReasoningPart("I should greet.", signature="sig", source="anthropic")
    message = Message("assistant", (thought, TextPart("Hello"), TextPart("!")))
    assert message.text == "Hello!"
    assert message.reasoning == (thought,)
    user = Message.user("What is this?", ImagePart("image/png", b"png"))
    assert user.text == "What is this?"
    assert [type(p) for p in user.parts] == [TextPart, ImagePart]
    assert "3 bytes" in repr(user.parts[1])
    assert "url='https://example.invalid/a.png'" in repr(ImagePart(url="https://example.invalid/a.png"))


# -- events stored before schema version 2 ----------------------------------------

V1_EVENTS = """
[
 {"seq": 1, "type": "message.added", "at": 1.0, "run_id": "run_1", "schema_version": 1,
  "data": {"message": {"role": "user", "id": "msg_u", "created_at": 1.0,
                       "parts": [{"kind": "text", "text": "look this up"}]}}},
 {"seq": 2, "type": "message.added", "at": 2.0, "run_id": "run_1", "schema_version": 1,
  "data": {"message": {"role": "assistant", "id": "msg_a", "created_at": 2.0,
                       "parts": [{"kind": "text", "text": "Sure."},
                                 {"kind": "tool_call", "call_id": "c1", "name": "lookup", "arguments": {"q": "x"}}]}}},
 {"seq": 3, "type": "usage.recorded", "at": 3.0, "run_id": "run_1", "schema_version": 1,
  "data": {"usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_tokens": 1, "cache_write_tokens": 0},
           "model": "openai/gpt-4.1"}},
 {"seq": 4, "type": "tool.finished", "at": 4.0, "run_id": "run_1", "schema_version": 1,
  "data": {"call_id": "c1", "name": "lookup", "outcome": "ok", "message_id": "msg_t", "duration_ms": 1.0,
           "result": {"call_id": "c1", "content": "found", "is_error": false}}}
]
"""


def test_events_stored_with_schema_version_1_still_decode() -> None:
    """JSON written by the kernel before the parts were added (schema_version 1, typed
    here by hand) decodes to the same records, and re-encodes at the current version."""
    assert codec.SCHEMA_VERSION == 2
    events = [codec.decode_event(raw) for raw in json.loads(V1_EVENTS)]
    user, assistant = events[0].payload.message, events[1].payload.message
    assert user.parts == (TextPart("look this up"),)
    assert assistant.parts == (TextPart("Sure."), ToolCallPart("c1", "lookup", {"q": "x"}))
    assert events[2].payload.usage == Usage(10, 5, 1, 0, 0)
    assert events[3].payload.result == ToolResultPart("c1", "found", False)
    for event in events:
        assert codec.encode_event(event)["schema_version"] == codec.SCHEMA_VERSION
        assert codec.decode_event(codec.encode_event(event)) == event


def test_records_and_results_stored_with_schema_version_1_still_decode() -> None:
    """A version-1 session record and run result (by hand) decode after the bump."""
    record = codec.decode_record(
        {"schema_version": 1, "id": "s", "agent": "a", "usage": {"input_tokens": 3, "output_tokens": 4}}
    )
    assert record.usage == Usage(3, 4)
    result = codec.decode_run_result(
        {"schema_version": 1, "session_id": "s", "run_id": "r", "status": "completed", "text": "hi",
         "messages": [{"role": "assistant", "id": "m", "created_at": 1.0, "parts": [{"kind": "text", "text": "hi"}]}]}
    )
    assert result == RunResult("s", "r", "completed", "hi", (Message("assistant", (TextPart("hi"),), "m", 1.0),))
