"""Object keys: session ids encoded, logs ordered by sequence, the listing index ordered.

Session ids are never used raw in a key: a session's objects live under the lower-case
base32hex encoding of its UTF-8 id (``[0-9a-v]`` only, reversible, distinct for ids that
differ only in case). Sequence numbers are zero-padded to 20 digits so key order is
sequence order. Listing-index keys sort in the contract's order (newest ``created_at``
first, then ``id`` descending) because S3 lists keys in ascending byte order.
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
    "index_scopes",
    "listing_scope",
    "order_key",
    "parse_order_key",
    "seq_name",
]

_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
_INVERT = str.maketrans(_ALPHABET, _ALPHABET[::-1])
_TERMINATOR = "~"  # sorts after every base32hex character: a prefix id sorts after its extensions
_ORDER_KEY = re.compile(r"^([0-9a-f]{16})([0-9a-v]{1,205})~$")


def encode_id(session_id: str) -> str:
    """The key segment of a session: lower-case base32hex of the UTF-8 id.

    Refuses ids the kernel would refuse (``InvalidSessionId``).
    """
    validate_session_id(session_id)
    return base64.b32hexencode(session_id.encode()).decode().rstrip("=").lower()


def decode_id(segment: str) -> str:
    """The session id a key segment encodes; ``ValueError`` if it encodes none."""
    try:
        return base64.b32hexdecode(segment.upper() + "=" * (-len(segment) % 8)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{segment!r} is not an encoded session id") from exc


def seq_name(seq: int) -> str:
    return f"{seq:020d}"


def _sortable_time(created_at: float) -> int:
    created_at += 0.0  # -0.0 == 0.0 for the contract: give them one key
    (bits,) = struct.unpack(">Q", struct.pack(">d", created_at))
    return bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)


def order_key(created_at: float, session_id: str) -> str:
    """A key whose ascending order is descending ``(created_at, id)``.

    The time is the bitwise complement of the float's sortable bit pattern (exact, no
    rounding); the id is its base32hex form with every digit complemented, closed by a
    terminator that sorts after every digit.
    """
    inverted_time = 0xFFFF_FFFF_FFFF_FFFF - _sortable_time(created_at)
    return f"{inverted_time:016x}{encode_id(session_id).translate(_INVERT)}{_TERMINATOR}"


def parse_order_key(key: str) -> tuple[str, str] | None:
    """``(time part, session id)`` of an order key, or ``None`` if it is not one."""
    match = _ORDER_KEY.match(key)
    if match is None:
        return None
    try:
        return match.group(1), decode_id(match.group(2).translate(_INVERT))
    except ValueError:
        return None


def _scope(kind: str, *parts: str) -> str:
    digest = hashlib.sha256(chr(0).join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{kind}-{digest}"


def index_scopes(agent: str, labels: dict[str, str]) -> list[str]:
    """Every index prefix a session with this agent and these labels is entered under."""
    return ["all", _scope("agent", agent), *(_scope("label", k, v) for k, v in sorted(labels.items()))]


def listing_scope(filter: SessionFilter) -> str:
    """The index prefix holding every match of ``filter`` (and as few others as we can tell)."""
    if filter.labels:
        key = min(filter.labels)
        return _scope("label", key, filter.labels[key])
    if filter.agent is not None:
        return _scope("agent", filter.agent)
    return "all"
