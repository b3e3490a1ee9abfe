"""The SSE decoder follows the WHATWG event-stream rules on bytes split anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness_kernel.http import ServerSentEvent, SSEDecoder


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events + decoder.close()


def test_line_endings_lf_crlf_and_cr_are_all_line_ends() -> None:
    """LF, CRLF and a bare CR each end a line; the three streams give the same events."""
    for end in (b"\n", b"\r\n", b"\r"):
        body = end.join([b"event: add", b"data: 1", b"data: 2", b"", b"data: x", b"", b""])
        assert decode(body) == [ServerSentEvent("add", "1\n2"), ServerSentEvent("message", "x")]


def test_a_crlf_split_across_chunks_is_one_line_end() -> None:
    """CR at the end of one chunk and LF at the start of the next make one line end, not a
    line end followed by a blank line (which would dispatch early)."""
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [ServerSentEvent("message", "a\nb")]


def test_field_parsing_follows_the_spec() -> None:
    """One space after the colon is dropped (only one); a line without a colon is a field
    with an empty value; comments and unknown fields are ignored."""
    body = b": keep-alive\ndata:no-space\ndata:  two\ndata\nfoo: bar\n\n"
    assert decode(body) == [ServerSentEvent("message", "no-space\n two\n")]


def test_id_and_retry_persist_and_bad_values_are_ignored() -> None:
    """``id`` persists across events (a NUL makes it ignored); ``retry`` takes digits only."""
    body = b"id: 7\nretry: 1500\ndata: a\n\nid: 8\x00\nretry: soon\ndata: b\n\n"
    assert decode(body) == [ServerSentEvent("message", "a", "7", 1500), ServerSentEvent("message", "b", "7", 1500)]


def test_an_event_without_data_is_not_dispatched() -> None:
    """A blank line after only an ``event`` field dispatches nothing and resets the type."""
    assert decode(b"event: ping\n\ndata: x\n\n") == [ServerSentEvent("message", "x")]


def test_a_leading_byte_order_mark_is_dropped() -> None:
    """A UTF-8 BOM at the very start is not part of the first field name."""
    assert decode(b"\xef\xbb\xbfdata: x\n\n") == [ServerSentEvent("message", "x")]


def test_the_pending_event_is_flushed_at_end_of_stream() -> None:
    """A last event without its blank line (or without a final newline) still arrives."""
    assert decode(b"data: a\n\ndata: [DONE]") == [ServerSentEvent("message", "a"), ServerSentEvent("message", "[DONE]")]
    assert decode(b"event: message_stop\ndata: {}\n") == [ServerSentEvent("message_stop", "{}")]


def test_multibyte_characters_split_between_chunks_survive() -> None:
    """UTF-8 sequences cut by a chunk boundary decode whole."""
    body = "data: Olá, 世界 🌍\n\n".encode()
    assert decode(*[body[i : i + 1] for i in range(len(body))]) == [ServerSentEvent("message", "Olá, 世界 🌍")]


def test_feed_after_close_is_an_error() -> None:
    """A closed decoder refuses more input instead of silently dropping it."""
    decoder = SSEDecoder()
    decoder.close()
    with pytest.raises(RuntimeError):
        decoder.feed(b"data: x\n\n")


# -- properties ---------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=12)
_event = st.tuples(
    st.sampled_from(["", "message", "error", "content_block_delta"]),
    st.lists(_text, min_size=1, max_size=3),
    st.one_of(st.none(), st.text(alphabet="abc123", min_size=1, max_size=4)),
)


def _encode(events: list[tuple[str, list[str], str | None]], end: bytes, comments: bool) -> bytes:
    out: list[bytes] = []

    def line(text: str) -> None:
        out.append(text.encode() + end)

    for name, data, event_id in events:
        if comments:
            line(": comment")
        if name:
            line(f"event: {name}")
        if event_id is not None:
            line(f"id: {event_id}")
        for piece in data:
            line(f"data: {piece}")
        line("")
    return b"".join(out)


def _expected(events: list[tuple[str, list[str], str | None]]) -> list[ServerSentEvent]:
    result, last_id = [], None
    for name, data, event_id in events:
        last_id = event_id if event_id is not None else last_id
        result.append(ServerSentEvent(name or "message", "\n".join(data), last_id))
    return result


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(_event, max_size=6),
    end=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    comments=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_any_split_of_an_encoded_stream_gives_the_encoded_events(
    events: list[tuple[str, list[str], str | None]], end: bytes, comments: bool, cuts: list[int]
) -> None:
    """Round trip and split invariance: encode events with any line ending and comments,
    cut the bytes anywhere (inside CRLF pairs and UTF-8 sequences included): the decoder
    returns exactly the events encoded."""
    body = _encode(events, end, comments)
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert decode(*chunks) == _expected(events)
    assert decode(body) == _expected(events)


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_arbitrary_bytes_decode_the_same_however_they_are_split(body: bytes, cuts: list[int]) -> None:
    """For any bytes at all, feeding them in pieces equals feeding them at once."""
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert decode(*chunks) == decode(body)
