"""Object keys: session ids encoded, logs ordered by sequence, the listing index ordered.

Session ids are never used raw in a key: a session's objects live under the lower-case
base32hex encoding of its UTF-8 id (``[0-9a-v]`` only, reversible, distinct for ids that
differ only in case). Sequence numbers are zero-padded to 20 digits so key order is
sequence order. Listing-index keys sort in the contract's order (newest ``created_at``
first, then ``id`` descending) because S3 lists keys in ascending byte order.
"""

from __future__ import annotations

import re

from harness_kernel.storage import decode_id, encode_id, index_scopes, listing_scope, sortable_time

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


def seq_name(seq: int) -> str:
    return f"{seq:020d}"


def order_key(created_at: float, session_id: str) -> str:
    """A key whose ascending order is descending ``(created_at, id)``.

    The time is the bitwise complement of the float's sortable bit pattern (exact, no
    rounding); the id is its base32hex form with every digit complemented, closed by a
    terminator that sorts after every digit.
    """
    inverted_time = 0xFFFF_FFFF_FFFF_FFFF - sortable_time(created_at)
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
