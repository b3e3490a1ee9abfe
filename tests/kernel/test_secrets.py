"""The one secrets module: sensitive names, secret option values, and masking."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from harness_kernel._secrets import (
    MASK,
    SENSITIVE_NAME,
    is_sensitive_name,
    mask_key_shapes,
    mask_tree,
    mask_values,
    secret_header_values,
    secret_option_values,
    sensitive_names,
)


def test_the_mask_reads_as_before() -> None:
    """Logs, errors and rendered config have always shown ``[redacted]``; it stays."""
    assert MASK == "[redacted]"


def test_both_former_word_lists_are_sensitive() -> None:
    """The union of the logging and the HTTP word lists, in any case and inside longer names."""
    for name in [
        "api_key", "apiKey", "x-api-key", "API-KEY", "Authorization", "password", "db_passwd",
        "refresh_token", "client_secret", "Cookie", "set-cookie", "credentials", "private_key",
        "private-key",
    ]:
        assert is_sensitive_name(name), name
    for name in ["model", "base_url", "path", "timeout", "headers", "event", "level"]:
        assert not is_sensitive_name(name), name


def test_sensitive_names_widens_the_list_with_literal_names() -> None:
    """A host's ``redact_keys`` add to the list; their characters are taken literally."""
    pattern = sensitive_names(["tenant.pin"])
    assert pattern.search("TENANT.PIN")
    assert pattern.search("api_key")
    assert not pattern.search("tenantXpin")
    assert sensitive_names([]) is SENSITIVE_NAME


@attrs.frozen
class Inner:
    token: str = "inner-token-1"
    label: str = "not secret"


@attrs.frozen
class Options:
    api_key: str | None = "sk-live-abcdefghijklmnop"
    account: str = attrs.field(default="acct-9876", metadata={"secret": True})
    base_url: str = "https://example.invalid"
    headers: dict[str, str] = attrs.field(
        factory=lambda: {"Authorization": "Bearer tok-123456", "x-trace": "trace-1"}
    )
    extra: dict[str, object] = attrs.field(factory=lambda: {"nested": {"client_secret": "cs-4242"}})
    inner: Inner = attrs.field(factory=Inner)
    passwords: list[str] = attrs.field(factory=lambda: ["pw-one", "pw-two"])


def test_secret_option_values_finds_marked_named_nested_and_keyed_values() -> None:
    """Marked fields, sensitively named fields, nested options and sensitive dict keys
    all count; ordinary fields, ``None`` and ordinary dict entries do not."""
    values = secret_option_values(Options())
    assert values == [
        "sk-live-abcdefghijklmnop",
        "acct-9876",
        "Bearer tok-123456",
        "tok-123456",
        "cs-4242",
        "inner-token-1",
        "pw-one",
        "pw-two",
    ]
    assert secret_option_values(Options(api_key=None, passwords=[])).count("sk-live-abcdefghijklmnop") == 0


def test_secret_option_values_of_something_not_options_is_empty() -> None:
    """Only attrs options have fields; a dict or ``None`` given instead yields nothing."""
    assert secret_option_values(None) == []
    assert secret_option_values("api_key") == []


def test_secret_header_values_lists_the_token_of_an_auth_scheme() -> None:
    """``Authorization: Bearer x`` lists the whole value and ``x``; other headers nothing."""
    assert secret_header_values(
        {"api-key": "azure-key-1", "Authorization": "Bearer tok-123", "x-trace": "t"}
    ) == ["azure-key-1", "Bearer tok-123", "tok-123"]


def test_mask_values_masks_the_longest_value_first_and_skips_short_ones() -> None:
    """A secret containing another is hidden whole; values under four characters stay."""
    text = "key=abcdefgh part=abcd pin=123"
    assert mask_values(text, ["abcd", "abcdefgh", "123", ""]) == f"key={MASK} part={MASK} pin=123"


def test_mask_key_shapes_cuts_unconfigured_keys() -> None:
    """Key-shaped strings (``sk-...``, a key masked for display) go even if never configured."""
    out = mask_key_shapes("bad key sk-proj-abcdefghijklmnop or 4f9bb533****cc24, model gpt-4.1")
    assert "abcdefghijklmnop" not in out
    assert "4f9bb533" not in out
    assert out.endswith("model gpt-4.1")


def test_mask_tree_masks_inside_nested_data_and_keeps_the_rest() -> None:
    """Strings anywhere in dicts and lists are masked; keys, numbers and None stay."""
    data = {"a": ["x s3cr3t-val y", ("s3cr3t-val",)], "n": 3, "z": None, "s3cr3t-val": {"b": "ok"}}
    assert mask_tree(data, ["s3cr3t-val"]) == {
        "a": [f"x {MASK} y", [MASK]],
        "n": 3,
        "z": None,
        "s3cr3t-val": {"b": "ok"},
    }


# Secrets are drawn from characters that do not occur in the mask: a value overlapping
# "[redacted]" itself could be "found" in the mask text, which says nothing about leaks.
_secret_chars = st.characters(blacklist_characters="[]redact", blacklist_categories=("Cs",))
_secrets = st.lists(st.text(_secret_chars, min_size=1, max_size=8), max_size=5)


@given(_secrets, st.lists(st.text(max_size=6), max_size=8), st.data())
def test_mask_values_never_leaves_a_secret_of_four_or_more_characters(
    secrets: list[str], filler: list[str], data: st.DataObject
) -> None:
    """Whatever the text and however the secrets overlap, none of length >= 4 survives."""
    pieces = filler + secrets * 2
    text = "".join(data.draw(st.permutations(pieces))) if pieces else ""
    out = mask_values(text, secrets)
    for secret in secrets:
        if len(secret) >= 4:
            assert secret not in out
    if not any(len(s) >= 4 for s in secrets):
        assert out == text


# A small alphabet, so the leaves of the tree often contain the secrets.
_xyz_secrets = st.lists(st.text("xyz", min_size=4, max_size=6), max_size=4)


@given(_xyz_secrets, st.recursive(
    st.text("xyz ", max_size=16) | st.integers() | st.none(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
    max_leaves=10,
))
def test_mask_tree_never_leaves_a_secret_in_any_string(secrets: list[str], tree: object) -> None:
    """Every string inside the masked tree is free of every secret of length >= 4."""
    def strings(value: object) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return []

    for text in strings(mask_tree(tree, secrets)):
        for secret in secrets:
            if len(secret) >= 4:
                assert secret not in text
