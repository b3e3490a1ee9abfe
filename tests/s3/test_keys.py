"""Key encodings of the S3 backend: reversible, confined, and ordered like the contract."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from harness_kernel_s3 import decode_id, encode_id
from harness_kernel_s3._keys import order_key, parse_order_key

ids = st.text(string.ascii_letters + string.digits + "._:@-", min_size=1, max_size=128).filter(
    lambda s: s[0].isalnum()
)
times = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12) | st.sampled_from([0.0, -0.0])


@given(ids)
def test_session_ids_round_trip_through_lowercase_key_segments(session_id: str) -> None:
    """Every valid id encodes to [0-9a-v] only and decodes back to itself."""
    segment = encode_id(session_id)
    assert set(segment) <= set("0123456789abcdefghijklmnopqrstuv")
    assert decode_id(segment) == session_id


@given(st.lists(st.tuples(times, ids), min_size=2, max_size=30, unique=True))
def test_ascending_order_keys_are_the_contract_order(sessions: list[tuple[float, str]]) -> None:
    """Sorting order keys ascending gives newest created_at first, then id descending."""
    by_key = sorted(sessions, key=lambda s: order_key(*s))
    assert by_key == sorted(sessions, reverse=True)
    for created_at, session_id in sessions:
        parsed = parse_order_key(order_key(created_at, session_id))
        assert parsed is not None
        assert parsed[1] == session_id
