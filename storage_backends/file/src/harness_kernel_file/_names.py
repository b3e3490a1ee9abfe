"""File and directory names derived from session ids, and the listing order on disk.

Session ids are never used raw as path segments. A session's directory is named by the
base32hex encoding of its UTF-8 id, lower case: only ``[0-9a-v]``, so it cannot hold a
separator, a dot segment or a NUL, two ids differing only in case get different names on
a case-insensitive filesystem, and the id is recovered by decoding. base32hex keeps the
byte order of its input, which the listing index relies on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from harness_kernel import validate_session_id
from harness_kernel.contracts import SessionFilter

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


def encode_id(session_id: str) -> str:
    """The directory name of a session: lower-case base32hex of the UTF-8 id.

    Refuses ids the kernel would refuse (``InvalidSessionId``): the 128-character limit
    keeps every name under the 255-byte limit of common filesystems.
    """
    validate_session_id(session_id)
    return base64.b32hexencode(session_id.encode()).decode().rstrip("=").lower()


def decode_id(name: str) -> str:
    """The session id a directory name encodes; ``ValueError`` if it encodes none."""
    try:
        raw = base64.b32hexdecode(name.upper() + "=" * (-len(name) % 8))
        return raw.decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{name!r} is not an encoded session id") from exc


def sortable_time(created_at: float) -> str:
    """16 hex digits whose string order is the numeric order of ``created_at`` (exact)."""
    created_at += 0.0  # -0.0 == 0.0 for the contract: give them one key
    (bits,) = struct.unpack(">Q", struct.pack(">d", created_at))
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
    return f"{bits:016x}"


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


def _scope(kind: str, *parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{kind}-{digest}"


def index_scopes(agent: str, labels: dict[str, str]) -> list[str]:
    """Every index directory a session with this agent and these labels is entered in."""
    return ["all", _scope("agent", agent), *(_scope("label", k, v) for k, v in sorted(labels.items()))]


def listing_scope(filter: SessionFilter) -> str:
    """The index directory that holds every match of ``filter`` and as few others as we can tell."""
    if filter.labels:
        key = min(filter.labels)
        return _scope("label", key, filter.labels[key])
    if filter.agent is not None:
        return _scope("agent", filter.agent)
    return "all"
