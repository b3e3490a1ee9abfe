"""Names of the file backend: reversible, confined, and ordered like the contract."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from harness_kernel_file import decode_id, encode_id
from harness_kernel_file._names import entry_name, entry_session

ids = st.text(string.ascii_letters + string.digits + "._:@-", min_size=1, max_size=128).filter(
    lambda s: s[0].isalnum()
)
times = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12) | st.sampled_from([0.0, -0.0])


@given(ids)
def test_session_ids_round_trip_through_safe_directory_names(session_id: str) -> None:
    """Every valid id becomes a lower-case [0-9a-v] name of at most 205 bytes, and back."""
    name = encode_id(session_id)
    assert set(name) <= set("0123456789abcdefghijklmnopqrstuv")
    assert len(name) <= 205
    assert decode_id(name) == session_id


@given(st.lists(st.tuples(times, ids), min_size=2, max_size=30, unique=True))
def test_index_entry_names_sort_like_the_contract(sessions: list[tuple[float, str]]) -> None:
    """Descending entry names give newest created_at first, then id descending."""
    by_name = sorted(sessions, key=lambda s: entry_name(*s), reverse=True)
    assert by_name == sorted(sessions, reverse=True)
    for created_at, session_id in sessions:
        parsed = entry_session(entry_name(created_at, session_id))
        assert parsed is not None
        assert parsed[1] == session_id
