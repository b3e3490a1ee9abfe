"""What counts as a secret, and how it is cut out: one module for logging, HTTP and config.

Three questions have one answer each here:

- *Is this name sensitive?* ``SENSITIVE_NAME`` (``api_key``, ``authorization``,
  ``password``, ``token``, ``secret``, ``cookie``, ``credential``, ``private_key``, ...)
  decides for log keys, option fields, header names and config table keys alike.
- *Which values are secret?* ``secret_option_values`` reads them from a plugin's attrs
  options (fields marked ``metadata={"secret": True}`` or named sensitively, nested
  options, sensitive keys of dict fields, the password of a URL in any field);
  ``secret_header_values`` from HTTP headers.
- *How is a value hidden?* It is replaced by ``MASK``: ``SecretValues.mask`` (and
  ``mask_values`` / ``mask_tree`` built on it) cuts every known value out of a string
  and, known or not, every credential that text carries in a recognisable shape
  (``mask_credentials``); ``mask_key_shapes`` also cuts strings shaped like API keys.

The rules, in the order they apply:

1. *Credentials by shape* (``mask_credentials``), whether configured or not:

   - the password of a URL, ``scheme://user:PASSWORD@host`` (scheme, user and host are
     kept); a URL whose user part has no password is a token (``https://TOKEN@host``)
     when that part is at least ``URL_TOKEN_LENGTH`` characters long, and is masked
     whole; a shorter one reads as a user name (``ssh://git@host``) and stays;
   - the value after a sensitive name and ``=`` (``password=pw``, ``?token=t&``,
     ``API_KEY = "k"``), after a quoted sensitive key in a mapping's text
     (``{'password': 'pw'}``, ``"token": "t"``), and the credentials of an
     ``Authorization:`` header line (``Authorization: Bearer t``).

2. *Configured values*, whatever their length. A value of ``MIN_SUBSTRING_LENGTH``
   characters or more is masked wherever it occurs, inside words too. A shorter value
   (one to three characters, such as a PIN) is masked only where it does not cut a word
   in two: the character before it must not be a letter, digit or underscore when the
   value starts with one, nor the character after it when the value ends with one. So
   the configured secret ``x7`` is masked in ``pin x7`` and ``pin=x7;`` but not in
   ``max7`` or ``x7b``: a short value masked inside words would cut letters out of
   every message. A short value without any letter or digit (``:``, ``!!``) is masked
   only where it stands between whitespace or at an end of the text, and a value made
   only of whitespace is ignored: either would otherwise cut every colon or space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, final

import attrs

__all__ = [
    "MASK",
    "MIN_SUBSTRING_LENGTH",
    "SENSITIVE_NAME",
    "URL_TOKEN_LENGTH",
    "SecretValues",
    "is_sensitive_name",
    "mask_credentials",
    "mask_key_shapes",
    "mask_tree",
    "mask_values",
    "secret_header_values",
    "secret_option_values",
    "sensitive_names",
    "url_credentials",
]

MASK: Final = "[redacted]"
"""What a masked secret reads as, in logs, errors and rendered config."""

MIN_SUBSTRING_LENGTH: Final = 4
"""Configured values this long or longer are masked inside words too; shorter ones only
where they do not cut a word in two."""

URL_TOKEN_LENGTH: Final = 16
"""A URL user part without a password (``https://TOKEN@host``) this long or longer is a
token and masked; a shorter one is a user name (``git``, ``postgres``) and kept."""

SENSITIVE_NAME: Final = re.compile(
    r"api[_-]?key|authorization|password|passwd|token|secret|cookie|credential|private[_-]?key",
    re.IGNORECASE,
)
"""Names (of log keys, option fields, headers, table keys) whose values are secrets.

Searched, not matched: ``x-api-key``, ``refresh_token`` and ``db_password`` count too.
"""

# Strings shaped like API keys, or like a key an API masked for display
# ("sk-abc...", "4f9bb533****cc24"). The lookbehind anchors a match at the start of a
# token, which keeps the scan linear on long input.
_KEY_SHAPES: Final = re.compile(
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{12,}|(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]*\*{4,}[A-Za-z0-9_\-]*"
)

# ``scheme://user:password@`` and ``scheme://token@``. The lookbehind starts a match
# only where a scheme can start, and every part is bounded, so the scan stays linear.
# The password runs to the last "@" before the URL ends (whitespace, a quote or a
# bracket): a password written with a raw "@" or "/" is masked whole, not cut at it.
_URL_USERINFO: Final = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31}://)"
    r"(?P<user>[^\s\"'<>`/?#:@\[\]]{0,256})"
    r"(?::(?P<password>[^\s\"'<>`]{0,1024}))?@"
)

# What may follow ``name=`` as a bare value: up to a space, a separator or a bracket.
_BARE_VALUE: Final = r"[^\s&;,\"'<>(){}\[\]]+"
_AUTH_HEADER: Final = re.compile(
    r"(?P<lead>\b(?:proxy-)?authorization[ \t]*:[ \t]*(?:[A-Za-z][A-Za-z0-9_-]{0,20}[ \t]+)?)"
    r"(?P<value>[^\s\"',;]+)",
    re.IGNORECASE,
)


def _credential_patterns(names: re.Pattern[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """``name=value`` and ``"name": "value"`` for the sensitive ``names``."""
    key = rf"[\w.\-]{{0,64}}?(?:{names.pattern})[\w.\-]{{0,64}}"
    assigned = re.compile(
        rf"(?P<lead>(?<![\w.\-]){key}[ \t]*=[ \t]*)"
        rf"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|{_BARE_VALUE})",
        re.IGNORECASE,
    )
    quoted = re.compile(
        rf"(?P<lead>(?P<q>[\"']){key}(?P=q)[ \t]*:[ \t]*)"
        rf"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*')",
        re.IGNORECASE,
    )
    return assigned, quoted


_DEFAULT_CREDENTIALS: Final = _credential_patterns(SENSITIVE_NAME)


def is_sensitive_name(name: str) -> bool:
    """Whether a value stored under ``name`` is a secret (``SENSITIVE_NAME`` occurs in it)."""
    return SENSITIVE_NAME.search(name) is not None


def sensitive_names(extra: Iterable[str] = ()) -> re.Pattern[str]:
    """``SENSITIVE_NAME`` widened by ``extra`` literal names (a host's ``redact_keys``)."""
    words = "|".join(re.escape(name) for name in extra if name)
    if not words:
        return SENSITIVE_NAME
    return re.compile(f"{SENSITIVE_NAME.pattern}|{words}", re.IGNORECASE)


# -- credentials by shape ---------------------------------------------------------------


def _url_userinfo(match: re.Match[str]) -> str:
    scheme, user, password = match["scheme"], match["user"], match["password"]
    if password is not None:
        return f"{scheme}{user}:{MASK}@" if password else match.group()
    if len(user) >= URL_TOKEN_LENGTH:
        return f"{scheme}{MASK}@"
    return match.group()


def _masked_value(match: re.Match[str]) -> str:
    value = match["value"]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        inner = value[1:-1]
        return f"{match['lead']}{value[0]}{MASK if inner else ''}{value[0]}"
    return f"{match['lead']}{MASK}"


def _mask_credentials(text: str, patterns: tuple[re.Pattern[str], re.Pattern[str]]) -> str:
    if "@" in text:
        text = _URL_USERINFO.sub(_url_userinfo, text)
    if "=" in text:
        text = patterns[0].sub(_masked_value, text)
    if ":" in text:
        text = patterns[1].sub(_masked_value, text)
        text = _AUTH_HEADER.sub(_masked_value, text)
    return text


def mask_credentials(text: str, names: re.Pattern[str] = SENSITIVE_NAME) -> str:
    """``text`` with the credentials it carries in a recognisable shape masked: URL
    passwords and tokens, values after a sensitive ``names`` entry and ``=``, quoted
    mapping entries under such a name, ``Authorization:`` header values (rule 1 of the
    module docstring). Masking twice changes nothing more."""
    patterns = _DEFAULT_CREDENTIALS if names is SENSITIVE_NAME else _credential_patterns(names)
    return _mask_credentials(text, patterns)


def url_credentials(text: str) -> list[str]:
    """The passwords (and tokens, as ``mask_credentials`` judges them) of the URLs in
    ``text``, so the same value found on its own elsewhere can be masked too."""
    found: list[str] = []
    if "@" not in text:
        return found
    for match in _URL_USERINFO.finditer(text):
        password, user = match["password"], match["user"]
        if password:
            found.append(password)
        elif password is None and len(user) >= URL_TOKEN_LENGTH:
            found.append(user)
    return found


# -- configured values ------------------------------------------------------------------


_WORD: Final = re.compile(r"\w")


def _whole_word(value: str) -> str:
    """A pattern for ``value`` that does not match where it would cut a word in two
    (or, for a value without a letter or digit, anywhere but between spaces)."""
    if not _WORD.search(value):
        return rf"(?<!\S){re.escape(value)}(?!\S)"
    before = r"(?<!\w)" if _WORD.match(value[0]) else ""
    after = r"(?!\w)" if _WORD.match(value[-1]) else ""
    return f"{before}{re.escape(value)}{after}"


@final
class SecretValues:
    """A fixed set of secret values, prepared once for masking many strings.

    ``mask`` applies both rules of the module docstring: credentials by shape (with
    ``names`` as the sensitive names, ``SENSITIVE_NAME`` by default), then every value.
    ``mask_values`` and ``mask_tree`` build one per call; a holder that masks often
    (the log redactor) keeps one and rebuilds it when its values change.
    """

    __slots__ = ("_credentials", "_short", "names", "ordered", "values")

    def __init__(
        self, values: Iterable[str] = (), *, names: re.Pattern[str] = SENSITIVE_NAME
    ) -> None:
        kept = {v for v in values if isinstance(v, str) and v.strip()}
        self.values: tuple[str, ...] = tuple(sorted(kept))
        """Every value kept (non-empty strings that are not only whitespace)."""
        # Longest first, so a secret that contains another is masked whole.
        self.ordered: tuple[str, ...] = tuple(
            sorted((v for v in kept if len(v) >= MIN_SUBSTRING_LENGTH), key=lambda v: (-len(v), v))
        )
        """The values masked wherever they occur, longest first."""
        short = sorted(
            (v for v in kept if len(v) < MIN_SUBSTRING_LENGTH), key=lambda v: (-len(v), v)
        )
        self._short = re.compile("|".join(_whole_word(v) for v in short)) if short else None
        self.names = names
        self._credentials = (
            _DEFAULT_CREDENTIALS if names is SENSITIVE_NAME else _credential_patterns(names)
        )

    def mask(self, text: str) -> str:
        """``text`` with its credentials and every one of the values replaced by ``MASK``."""
        text = _mask_credentials(text, self._credentials)
        for value in self.ordered:
            if value in text:
                text = text.replace(value, MASK)
        if self._short is not None:
            # After the long values: a short value next to a masked one stands alone now.
            text = self._short.sub(MASK, text)
        return text

    def mask_tree(self, value: Any) -> Any:
        """See ``mask_tree``."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, Mapping):
            return {key: self.mask_tree(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_tree(item) for item in value]
        return value


def mask_values(text: str, values: Iterable[str]) -> str:
    """``text`` with its credentials and every occurrence of each of ``values`` replaced
    by ``MASK``, as ``SecretValues.mask`` does (short values only as whole words).

    Longer values are masked first, so a secret that contains another is hidden whole.
    Empty or whitespace-only values (and non-strings) are ignored.
    """
    return SecretValues(values).mask(text)


def mask_key_shapes(text: str) -> str:
    """``text`` with strings shaped like API keys (``sk-...``, ``abcd****wxyz``) masked."""
    return _KEY_SHAPES.sub(MASK, text)


def mask_tree(value: Any, values: Iterable[str]) -> Any:
    """A copy of ``value`` (nested dicts, lists, tuples, strings) with every string
    masked as ``mask_values`` does; mapping keys and other objects are kept as they
    are. Lists and tuples come back as lists, mappings as dicts."""
    return SecretValues(values).mask_tree(value)


def secret_header_values(headers: Mapping[str, str]) -> list[str]:
    """Values of headers whose names are sensitive (``api-key``, ``Authorization``).

    For a value with an auth scheme, such as ``Bearer xyz``, the token alone is listed
    too: it is what appears on its own in an echoed request or an error message.
    """
    values: list[str] = []
    for name, value in headers.items():
        if isinstance(name, str) and is_sensitive_name(name) and isinstance(value, str) and value:
            _add_credential(values, value)
    return values


def secret_option_values(options: object) -> list[str]:
    """The secret strings inside a plugin's attrs options instance, in field order.

    A field is secret when it is marked ``metadata={"secret": True}`` or its name is
    sensitive; every string it holds (directly, or inside a list or dict) is listed.
    Other fields are searched: nested attrs options, lists, and dicts, whose entries
    under a sensitive key (``headers={"Authorization": "Bearer ..."}``) are secrets,
    with the token of an auth scheme listed on its own as well. In any other string,
    the password of a URL (``base_url = "http://user:PW@host"``) is listed.
    Anything that is not an attrs instance has no secret fields: ``[]``.
    """
    found: list[str] = []
    _search(options, found)
    return list(dict.fromkeys(found))


def _search(value: object, found: list[str]) -> None:
    cls = type(value)
    if attrs.has(cls):
        for field in attrs.fields(cls):
            item = getattr(value, field.name)
            if field.metadata.get("secret") or is_sensitive_name(field.name):
                _all_strings(item, found)
            else:
                _search(item, found)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and is_sensitive_name(key):
                if isinstance(item, str):
                    if item:
                        _add_credential(found, item)
                else:
                    _all_strings(item, found)
            else:
                _search(item, found)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _search(item, found)
    elif isinstance(value, str):
        found.extend(url_credentials(value))


def _all_strings(value: object, found: list[str]) -> None:
    if isinstance(value, str):
        if value:
            found.append(value)
        return
    cls = type(value)
    if attrs.has(cls):
        for field in attrs.fields(cls):
            _all_strings(getattr(value, field.name), found)
    elif isinstance(value, Mapping):
        for item in value.values():
            _all_strings(item, found)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _all_strings(item, found)


def _add_credential(found: list[str], value: str) -> None:
    found.append(value)
    scheme, _, token = value.partition(" ")
    if token.strip() and scheme.isalpha():
        found.append(token.strip())
