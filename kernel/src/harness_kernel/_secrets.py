"""What counts as a secret, and how it is cut out: one module for logging, HTTP and config.

Three questions have one answer each here:

- *Is this name sensitive?* ``SENSITIVE_NAME`` (``api_key``, ``authorization``,
  ``password``, ``token``, ``secret``, ``cookie``, ``credential``, ``private_key``, ...)
  decides for log keys, option fields, header names and config table keys alike.
- *Which values are secret?* ``secret_option_values`` reads them from a plugin's attrs
  options (fields marked ``metadata={"secret": True}`` or named sensitively, nested
  options, sensitive keys of dict fields); ``secret_header_values`` from HTTP headers.
- *How is a value hidden?* It is replaced by ``MASK`` wherever it occurs:
  ``mask_values`` in one string, ``mask_tree`` through nested data; ``mask_key_shapes``
  also cuts strings shaped like API keys that were never configured.

Values shorter than ``MIN_SECRET_LENGTH`` are never masked: they would cut ordinary
words out of every message, and no real credential is that short.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, final

import attrs

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SENSITIVE_NAME",
    "SecretValues",
    "is_sensitive_name",
    "mask_key_shapes",
    "mask_tree",
    "mask_values",
    "secret_header_values",
    "secret_option_values",
    "sensitive_names",
]

MASK: Final = "[redacted]"
"""What a masked secret reads as, in logs, errors and rendered config."""

MIN_SECRET_LENGTH: Final = 4

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


def is_sensitive_name(name: str) -> bool:
    """Whether a value stored under ``name`` is a secret (``SENSITIVE_NAME`` occurs in it)."""
    return SENSITIVE_NAME.search(name) is not None


def sensitive_names(extra: Iterable[str] = ()) -> re.Pattern[str]:
    """``SENSITIVE_NAME`` widened by ``extra`` literal names (a host's ``redact_keys``)."""
    words = "|".join(re.escape(name) for name in extra if name)
    if not words:
        return SENSITIVE_NAME
    return re.compile(f"{SENSITIVE_NAME.pattern}|{words}", re.IGNORECASE)


@final
class SecretValues:
    """A fixed set of secret values, ordered once for masking many strings.

    ``mask_values`` and ``mask_tree`` build one per call; a holder that masks often
    (the log redactor) keeps one and rebuilds it when its values change.
    """

    __slots__ = ("ordered",)

    def __init__(self, values: Iterable[str] = ()) -> None:
        kept = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another is masked whole.
        self.ordered: tuple[str, ...] = tuple(sorted(kept, key=lambda v: (-len(v), v)))

    def mask(self, text: str) -> str:
        """``text`` with every occurrence of each value replaced by ``MASK``."""
        for value in self.ordered:
            if value in text:
                text = text.replace(value, MASK)
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
    """``text`` with every occurrence of each of ``values`` replaced by ``MASK``.

    Longer values are masked first, so a secret that contains another is hidden whole.
    Values shorter than ``MIN_SECRET_LENGTH`` (and non-strings) are ignored.
    """
    return SecretValues(values).mask(text)


def mask_key_shapes(text: str) -> str:
    """``text`` with strings shaped like API keys (``sk-...``, ``abcd****wxyz``) masked."""
    return _KEY_SHAPES.sub(MASK, text)


def mask_tree(value: Any, values: Iterable[str]) -> Any:
    """A copy of ``value`` (nested dicts, lists, tuples, strings) with ``values`` masked
    in every string as ``mask_values`` does; mapping keys and other objects are kept as
    they are. Lists and tuples come back as lists, mappings as dicts."""
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
    with the token of an auth scheme listed on its own as well.
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
