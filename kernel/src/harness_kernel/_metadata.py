"""Session metadata for people: a title, a preview of the last answer, tags, pinned.

The values live on ``SessionRecord`` (so every backend stores and lists them); this
module says what a valid value is and how the derived ones are cut from messages.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from .errors import InvalidArgument

__all__ = [
    "MAX_TAGS",
    "PREVIEW_CHARS",
    "TAG_CHARS",
    "TITLE_CHARS",
    "clean_tags",
    "clean_title",
    "preview_from",
    "title_from",
]

TITLE_CHARS = 200
"""The longest title a host may set."""
DERIVED_TITLE_CHARS = 80
"""A title taken from the first user message is cut to this many characters."""
PREVIEW_CHARS = 200
"""The preview keeps this many characters of the last answer."""
TAG_CHARS = 64
MAX_TAGS = 32


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def title_from(message_text: str) -> str:
    """The title a session gets from its first user message: one line, clipped."""
    return _clip(message_text, DERIVED_TITLE_CHARS)


def preview_from(answer_text: str) -> str:
    """The preview of an answer: one line, clipped."""
    return _clip(answer_text, PREVIEW_CHARS)


def _printable(text: str) -> bool:
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def clean_title(title: Any) -> str:
    """A title a host sets, trimmed; ``InvalidArgument`` if it is not a short line of
    text. ``""`` clears it (the next user message gives one again)."""
    if not isinstance(title, str):
        raise InvalidArgument("title must be a string")
    text: str = title.strip()
    if len(text) > TITLE_CHARS:
        raise InvalidArgument(f"title must be at most {TITLE_CHARS} characters")
    if not _printable(text):
        raise InvalidArgument("title must not hold control characters")
    return text


def clean_tags(tags: Iterable[Any]) -> tuple[str, ...]:
    """Tags as stored: sorted, each once; ``InvalidArgument`` for a tag that is empty,
    longer than ``TAG_CHARS``, holds whitespace or control characters, or when there
    are more than ``MAX_TAGS``."""
    if isinstance(tags, str):
        raise InvalidArgument("tags must be a list of strings, not one string")
    found: set[str] = set()
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise InvalidArgument("every tag must be a non-empty string")
        if len(tag) > TAG_CHARS:
            raise InvalidArgument(f"tag {tag[:20]!r}...: at most {TAG_CHARS} characters")
        if not _printable(tag) or any(ch.isspace() for ch in tag):
            raise InvalidArgument(f"tag {tag!r}: no spaces or control characters")
        found.add(tag)
    if len(found) > MAX_TAGS:
        raise InvalidArgument(f"at most {MAX_TAGS} tags")
    return tuple(sorted(found))
