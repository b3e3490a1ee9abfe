"""The one secrets module: sensitive names, secret option values, and masking."""

from __future__ import annotations

import re

import attrs
from hypothesis import given
from hypothesis import strategies as st

from harness_kernel._logging import Redactor
from harness_kernel._secrets import (
    MASK,
    MIN_SUBSTRING_LENGTH,
    SENSITIVE_NAME,
    URL_TOKEN_LENGTH,
    SecretValues,
    is_sensitive_name,
    mask_credentials,
    mask_key_shapes,
    mask_tree,
    mask_values,
    secret_header_values,
    secret_option_values,
    sensitive_names,
    url_credentials,
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


def test_mask_values_masks_the_longest_value_first_and_short_ones_as_whole_words() -> None:
    """A secret containing another is hidden whole; a value under four characters is
    masked too, but only where it does not cut a word in two."""
    text = "key=abcdefgh part=abcd pin 123, data1234 has 123x"
    assert mask_values(text, ["abcd", "abcdefgh", "123", ""]) == (
        f"key={MASK} part={MASK} pin {MASK}, data1234 has 123x"
    )


def test_a_short_value_does_not_cut_letters_out_of_words() -> None:
    """Configuring the one-letter secret ``a`` masks the word ``a`` and nothing inside
    ``data``; a short value that starts or ends with punctuation is bounded only on its
    word side."""
    assert mask_values("a data a-b", ["a"]) == f"{MASK} data {MASK}-b"
    assert mask_values("x/7 and ax/7", ["/7"]) == f"x{MASK} and ax{MASK}"
    assert mask_values("a b  c", [" ", "\t"]) == "a b  c"  # whitespace-only values are ignored
    assert mask_values("k: v, and : alone", [":"]) == f"k: v, and {MASK} alone"


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


def _whole_word_occurrence(secret: str, text: str) -> bool:
    """Whether ``secret`` occurs in ``text`` where masking it cuts no word in two (a
    secret without a letter or digit: where it stands between whitespace)."""
    if re.search(r"\w", secret) is None:
        return re.search(rf"(?<!\S){re.escape(secret)}(?!\S)", text) is not None
    before = r"(?<!\w)" if re.match(r"\w", secret[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", secret[-1]) else ""
    return re.search(f"{before}{re.escape(secret)}{after}", text) is not None


@given(_secrets, st.lists(st.text(max_size=6), max_size=8), st.data())
def test_mask_values_never_leaves_a_configured_secret_whatever_its_length(
    secrets: list[str], filler: list[str], data: st.DataObject
) -> None:
    """Whatever the text and however the secrets overlap, none of four characters or
    more survives anywhere, and a shorter one survives only inside a word."""
    pieces = filler + secrets * 2
    text = "".join(data.draw(st.permutations(pieces))) if pieces else ""
    out = mask_values(text, secrets)
    for secret in secrets:
        if not secret.strip():
            continue
        if len(secret) >= MIN_SUBSTRING_LENGTH:
            assert secret not in out
        else:
            assert not _whole_word_occurrence(secret, out)


@given(st.text(_secret_chars, min_size=1, max_size=MIN_SUBSTRING_LENGTH - 1).filter(str.strip),
       st.sampled_from(["pin {} ok", "{}", "code={} ;", "( {} )", "'{}' ", "{} at start", "end: {}"]))
def test_a_configured_secret_shorter_than_four_characters_is_masked(secret: str, template: str) -> None:
    """A one- to three-character configured value standing on its own is masked: by
    ``mask_values``, by the log redactor, and in a masked config tree."""
    text = template.format(secret)
    assert not _whole_word_occurrence(secret, mask_values(text, [secret]))
    assert not _whole_word_occurrence(secret, Redactor(values=[secret]).scrub(text))
    assert not _whole_word_occurrence(secret, mask_tree({"k": [text]}, [secret])["k"][0])


# URL parts: a scheme, a user name, a host; the password may hold any printable
# character a careless operator might write unencoded ("@", "/", ":", "#", "%").
_schemes = st.sampled_from(["postgres", "postgresql+psycopg", "mysql", "redis", "amqp", "http", "https", "s3", "mongodb+srv"])
_users = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=0, max_size=12)
_passwords = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="\"'<>`"), min_size=1, max_size=24)
_hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?(:[0-9]{2,5})?", fullmatch=True)
_paths = st.sampled_from(["", "/", "/main", "/v1", "/0?sslmode=require"])


@given(_schemes, _users, _passwords, _hosts, _paths, st.sampled_from(["could not connect to {}", "{}", "url='{}' failed", "[{}]", "dsn: {}\nnext line"]))
def test_url_passwords_are_masked_keeping_scheme_user_and_host(
    scheme: str, user: str, password: str, host: str, path: str, template: str
) -> None:
    """``scheme://user:password@host`` reads ``scheme://user:[redacted]@host`` wherever
    the URL stands in a text, whatever the password holds; no secret is configured."""
    url = f"{scheme}://{user}:{password}@{host}{path}"
    out = mask_credentials(template.format(url))
    assert f"{scheme}://{user}:{MASK}@{host}{path}" in out
    assert mask_values(template.format(url), []) == out
    assert url_credentials(url) == [password]


@given(_schemes, st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=URL_TOKEN_LENGTH, max_size=48), _hosts)
def test_a_token_in_the_user_part_of_a_url_is_masked(scheme: str, token: str, host: str) -> None:
    """``https://TOKEN@host`` (a token as the whole user part) is masked whole."""
    out = mask_credentials(f"cloning {scheme}://{token}@{host}/repo.git")
    assert out == f"cloning {scheme}://{MASK}@{host}/repo.git"


def test_a_short_user_name_without_a_password_is_kept() -> None:
    """``ssh://git@host`` names a user, not a secret; plain URLs are left alone."""
    for text in ["ssh://git@github.com/x.git", "postgres://postgres@db/main", "http://[::1]:8080/a@b",
                 "see https://example.org/a?b=c and mail me@example.org"]:
        assert mask_credentials(text) == text


def test_values_after_sensitive_names_are_masked_in_text() -> None:
    """``password=...`` (libpq DSNs, query strings, env assignments), quoted mapping
    entries under a sensitive key and ``Authorization:`` lines lose their values,
    however short; other pairs stay."""
    cases = {
        "host=db user=app password=pw port=5432": f"host=db user=app password={MASK} port=5432",
        "GET /x?access_token=ab&page=2": f"GET /x?access_token={MASK}&page=2",
        'API_KEY = "k"': f'API_KEY = "{MASK}"',
        "{'password': 'p', 'user': 'u'}": f"{{'password': '{MASK}', 'user': 'u'}}",
        '{"client_secret": "s\\"x", "n": 1}': f'{{"client_secret": "{MASK}", "n": 1}}',
        "Authorization: Bearer abc.def\nHost: x": f"Authorization: Bearer {MASK}\nHost: x",
        "api_key: expected str, got int": "api_key: expected str, got int",
        "?password=&token=''": "?password=&token=''",
    }
    for text, expected in cases.items():
        assert mask_credentials(text) == expected, text


def test_the_host_s_redact_keys_widen_the_names_in_text_too() -> None:
    """A name in ``redact_keys`` masks ``name=value`` inside strings as well as the
    record key of that name."""
    redactor = Redactor(keys=["pin"])
    assert redactor.scrub("pin=12 ok") == f"pin={MASK} ok"
    assert redactor(None, "info", {"event": "e", "pin": 1, "note": "pin=12"}) == {
        "event": "e", "pin": MASK, "note": f"pin={MASK}"
    }
    assert SecretValues().mask("pin=12") == "pin=12"


_fragments = st.sampled_from(["password=", "token: ", "'token': ", '"', "'", "http://", "u:", "@", "h/", " ", "=", "x"])


@given(st.lists(st.text(_secret_chars, min_size=1, max_size=8), max_size=4), st.data())
def test_masking_twice_changes_nothing_more(secrets: list[str], data: st.DataObject) -> None:
    """Masking a masked text again changes nothing: the mask itself is never taken for
    a credential or a secret (so a record masked twice, by a provider and then by the
    log redactor, reads the same)."""
    pieces = data.draw(st.lists(_fragments | st.sampled_from(secrets or ["x"]) | st.text(max_size=4), max_size=14))
    text = "".join(pieces)
    masker = SecretValues(secrets)
    once = masker.mask(text)
    assert masker.mask(once) == once


def test_secret_option_values_lists_the_password_of_a_url_in_any_field() -> None:
    """A ``base_url`` with credentials contributes its password, so the password alone
    is masked wherever it appears (as a whole word, when it is short)."""

    @attrs.frozen
    class WithUrl:
        base_url: str = "http://user:PW@host/v1"
        mirrors: list[str] = attrs.field(factory=lambda: ["https://u:mirror-pass@m/x"])

    assert secret_option_values(WithUrl()) == ["PW", "mirror-pass"]
    assert mask_values("sent PW to host", secret_option_values(WithUrl())) == f"sent {MASK} to host"


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
