"""Schema and channel names: checked by the options, so free of psycopg (the plugin's
options load whenever the plugin is listed; psycopg only when a storage is built)."""

from __future__ import annotations

import re

__all__ = ["channel_name", "valid_schema"]

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def valid_schema(schema: str) -> str:
    """``schema`` if it is a lower-case identifier of at most 48 characters."""
    if not _SCHEMA.fullmatch(schema):
        raise ValueError(
            f"schema must be a lower-case identifier (letters, digits, _; at most 48), not {schema!r}"
        )
    return schema


def channel_name(schema: str) -> str:
    """The ``NOTIFY`` channel of a schema's appends."""
    return f"harness_kernel_{schema}"
