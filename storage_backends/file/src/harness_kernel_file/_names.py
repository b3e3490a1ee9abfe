"""File and directory names derived from session ids, and the listing order on disk.

Session ids are never used raw as path segments. A session's directory is named by the
base32hex encoding of its UTF-8 id, lower case: only ``[0-9a-v]``, so it cannot hold a
separator, a dot segment or a NUL, two ids differing only in case get different names on
a case-insensitive filesystem, and the id is recovered by decoding. base32hex keeps the
byte order of its input, which the listing index relies on.
"""

from __future__ import annotations

import re

from harness_kernel.storage import decode_id, encode_id, index_scopes, listing_scope
from harness_kernel.storage import sortable_time as _sortable_bits

__all__ = [
    "decode_id",
    "encode_id",
    "entry_name",
    "entry_session",
    "index_scopes",
    "listing_scope",
    "parse_cursor",
    "sortable_time",
]

_ENTRY = re.compile(r"^([0-9a-f]{16})-([0-9a-v]{1,205})$")


def sortable_time(created_at: float) -> str:
    """16 hex digits whose string order is the numeric order of ``created_at`` (exact)."""
    return f"{_sortable_bits(created_at):016x}"


def entry_name(created_at: float, session_id: str) -> str:
    """The name of a session's listing-index entry.

    Ascending name order is ascending ``(created_at, id)``: the contract's order read
    backwards.
    """
    return f"{sortable_time(created_at)}-{encode_id(session_id)}"


def entry_session(name: str) -> tuple[str, str] | None:
    """``(sortable time, session id)`` of an index entry name, ``None`` for a stray file."""
    match = _ENTRY.match(name)
    if match is None:
        return None
    try:
        return match.group(1), decode_id(match.group(2))
    except ValueError:
        return None


def parse_cursor(cursor: str) -> str:
    """The index entry name a cursor continues after; ``ValueError`` for a foreign cursor."""
    if not isinstance(cursor, str) or entry_session(cursor) is None:
        raise ValueError(f"invalid cursor {cursor!r:.80}: pass back a next_cursor from this storage")
    return cursor
