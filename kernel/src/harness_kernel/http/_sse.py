"""An incremental decoder for ``text/event-stream`` (server-sent events).

It follows the WHATWG parsing rules: lines end with CRLF, LF or CR (a CRLF split
across two chunks is one line end); a leading byte-order mark is dropped; a line
starting with ``:`` is a comment; ``field: value`` loses exactly one space after the
colon; ``data`` lines accumulate and an event is dispatched at a blank line; ``id`` and
``retry`` update the stream's last event id and reconnection time. One deliberate
extension: ``close()`` at end of stream dispatches an event that was still pending,
because real servers (and published transcripts) end with a last event and no blank
line; a strict parser would drop their final ``message_stop`` or ``[DONE]``.

The decoder works on bytes in any split: feeding a stream in one piece or byte by byte
gives the same events.
"""

from __future__ import annotations

import codecs
import re

import attrs

__all__ = ["SSEDecoder", "ServerSentEvent"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@attrs.frozen
class ServerSentEvent:
    """One dispatched event: its type (``message`` unless named), data and stream state."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    """The last event id set by the stream so far (it persists across events)."""
    retry: int | None = None
    """The reconnection time in milliseconds the stream asked for, if it did."""


class SSEDecoder:
    """Feed bytes with ``feed``; call ``close`` at end of stream. Both return events."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []  # text of the line not yet terminated
        self._skip_lf = False  # the last chunk ended in CR: a leading LF completes a CRLF
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None
        self._closed = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode ``chunk`` and return the events it completed."""
        if self._closed:
            raise RuntimeError("feed() after close()")
        return self._lines(self._text.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """End of stream: finish the last line and dispatch a pending event."""
        if self._closed:
            return []
        events = self._lines(self._text.decode(b"", final=True))
        self._closed = True
        if self._partial:
            line = "".join(self._partial)
            self._partial = []
            event = self._line(line)
            if event is not None:
                events.append(event)
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _lines(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[ServerSentEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            piece = text[start : match.start()]
            if self._partial:
                self._partial.append(piece)
                line = "".join(self._partial)
                self._partial = []
            else:
                line = piece
            event = self._line(line)
            if event is not None:
                events.append(event)
            start = match.end()
        if start < len(text):
            self._partial.append(text[start:])
        elif text.endswith("\r"):
            self._skip_lf = True
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            self._event or "message", "\n".join(self._data), self._last_id, self._retry
        )
        self._event = ""
        self._data = []
        return event
