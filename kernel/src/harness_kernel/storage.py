"""Helpers for storage backend authors: the pieces every backend needs the same way.

- ``check_batch``: the contract's numbering rule for ``append``; ``check_append_record``:
  its rule for ``append(..., record=)``.
- ``encode_id`` / ``decode_id``: a session id as a safe, reversible, case-distinct name
  (lower-case base32hex of its UTF-8 bytes: ``[0-9a-v]`` only, so no separator, dot
  segment or NUL; byte order is kept, so names sort as ids do).
- ``sortable_time``: ``created_at`` as a 64-bit integer whose order is the float's.
- ``index_scopes`` / ``listing_scope``: index partitions for label and agent filters,
  so a listing reads one partition instead of every session.
- ``list_order_key``, ``encode_cursor``, ``decode_cursor``: the contract's listing orders
  and an opaque cursor for each; ``page_in_order`` pages records read in any order.
- ``json_bytes``, ``gc_paused``: writing the codec's JSON as UTF-8, and decoding large
  reads without the garbage collector walking the heap over and over.

The file and S3 backends in this repository are built on them, as the memory backend is.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ._records import Event, SessionRecord
from .contracts import ListOrder, Page, SessionFilter
from .errors import IncarnationMismatch

__all__ = [
    "GC_PAUSE_EVENTS",
    "check_append_record",
    "check_batch",
    "check_incarnation",
    "decode_cursor",
    "decode_id",
    "encode_cursor",
    "encode_id",
    "gc_paused",
    "index_scopes",
    "json_bytes",
    "list_order_key",
    "listing_scope",
    "page_in_order",
    "sortable_time",
]

GC_PAUSE_EVENTS = 1000


def check_batch(events: Sequence[Event], expected_seq: int) -> None:
    """``ValueError`` unless ``events`` are numbered ``expected_seq + 1``, ``+ 2``, ..."""
    for offset, event in enumerate(events, start=1):
        if event.seq != expected_seq + offset:
            raise ValueError(
                f"events must be numbered from expected_seq + 1 = {expected_seq + 1}, contiguously"
            )


def check_append_record(session_id: str, record: SessionRecord) -> int:
    """``ValueError`` unless ``record`` may be saved by ``append(session_id, ...,
    record=record)``; returns the revision the stored record must have."""
    if record.id != session_id:
        raise ValueError(f"append(record=) of session '{record.id}' in the log of '{session_id}'")
    if record.revision < 1:
        raise ValueError("append(record=) needs record.revision >= 1 (stored revision + 1)")
    return record.revision - 1


def check_incarnation(session_id: str, stored: str, expected: str | None) -> None:
    """Raise ``IncarnationMismatch`` if an append naming ``expected`` would land in the
    stored incarnation ``stored`` of another session of the same id. Either side empty
    (a writer or a record from before incarnations) is not checked."""
    if expected and stored and stored != expected:
        raise IncarnationMismatch(
            f"session '{session_id}' was deleted and created again (incarnation {stored}, not {expected})"
        )


def encode_id(session_id: str) -> str:
    """A session id as a name: lower-case base32hex of its UTF-8 bytes.

    Refuses ids the kernel would refuse (``InvalidSessionId``); the 128-character limit
    keeps every name under the 255-byte limit of common filesystems.
    """
    from ._runtime import validate_session_id  # imported here: plugins import this module

    validate_session_id(session_id)
    return base64.b32hexencode(session_id.encode()).decode().rstrip("=").lower()


def decode_id(name: str) -> str:
    """The session id ``name`` encodes; ``ValueError`` if it encodes none."""
    try:
        return base64.b32hexdecode(name.upper() + "=" * (-len(name) % 8)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{name!r} is not an encoded session id") from exc


def sortable_time(created_at: float) -> int:
    """A 64-bit integer whose order is the numeric order of ``created_at`` (exact)."""
    created_at += 0.0  # -0.0 == 0.0 for the contract: give them one key
    (bits,) = struct.unpack(">Q", struct.pack(">d", created_at))
    return int(bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63))


def _scope(kind: str, *parts: str) -> str:
    digest = hashlib.sha256(chr(0).join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{kind}-{digest}"


def index_scopes(agent: str, labels: Mapping[str, str]) -> list[str]:
    """Every index partition a session with this agent and these labels is entered in."""
    return [
        "all",
        _scope("agent", agent),
        *(_scope("label", k, v) for k, v in sorted(labels.items())),
    ]


def listing_scope(filter: SessionFilter) -> str:
    """The partition holding every match of ``filter``, and as few others as we can tell
    (callers still check each record against the filter)."""
    if filter.labels:
        key = min(filter.labels)
        return _scope("label", key, filter.labels[key])
    if filter.agent is not None:
        return _scope("agent", filter.agent)
    return "all"


def list_order_key(record: SessionRecord, order: ListOrder = "created") -> tuple[float, str]:
    """The contract's listing order (for ``order``) is descending on this key."""
    return (record.updated_at if order == "updated" else record.created_at, record.id)


def encode_cursor(record: SessionRecord, order: ListOrder = "created") -> str:
    """An opaque cursor naming the last item of a page: its ``list_order_key``."""
    key = list_order_key(record, order)
    form: list[Any] = [key[0], key[1]] if order == "created" else [order, key[0], key[1]]
    raw = json.dumps(form, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: ListOrder = "created") -> tuple[float, str]:
    """The order key a cursor names; ``ValueError`` if it is not one of ours, or comes
    from a listing in another order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        form = json.loads(raw)
        if order != "created":
            tag, *form = form
            if tag != order:
                raise ValueError("a cursor of another order")
        value, session_id = form
        return float(value), str(session_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid cursor {cursor!r:.80}") from exc


def page_in_order(
    records: Iterable[SessionRecord],
    filter: SessionFilter,
    limit: int,
    cursor: str | None,
    order: ListOrder = "created",
) -> Page:
    """One page of the matches of ``filter`` among ``records``, in the contract's order:
    for backends that read every candidate record anyway (``ValueError`` as ``list``)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    after = decode_cursor(cursor, order) if cursor is not None else None
    matches = sorted(
        (r for r in records if filter.matches(r)),
        key=lambda r: list_order_key(r, order),
        reverse=True,
    )
    if after is not None:
        matches = [r for r in matches if list_order_key(r, order) < after]
    page = matches[:limit]
    more = len(matches) > limit
    return Page(tuple(page), encode_cursor(page[-1], order) if more else None)


def json_bytes(payload: Any) -> bytes:
    """``codec.dumps`` as UTF-8. A lone surrogate (valid in a Python str, not in UTF-8) is
    written as its JSON escape, which reads back as the same str."""
    from .codec import dumps  # imported here: listing plugins needs no codec

    text = dumps(payload)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


@contextmanager
def gc_paused(events: int) -> Iterator[None]:
    """Pause the cyclic garbage collector while a read of ``events`` events is decoded.

    Decoding thousands of events allocates a great many small objects, none in cycles;
    meanwhile the collector would walk the whole heap again and again (about 40% of a
    10,000-event read). It is turned back on afterwards, and only if it was on.
    """
    if events < GC_PAUSE_EVENTS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
