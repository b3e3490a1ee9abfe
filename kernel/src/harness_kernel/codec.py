"""The one cattrs converter, JSON helpers, schema versions and migrations.

Storage backends persist what ``encode_event`` / ``encode_record`` return (plain JSON
types) and read it back with ``decode_event`` / ``decode_record``. Every encoded payload
carries ``schema_version``; decoding an older version runs the migrations registered
with ``register_migration`` first, and a newer version than this kernel knows is refused
with a clear error instead of being misread. Nothing is ever pickled.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cattrs
from cattrs.strategies import configure_tagged_union

from ._records import (
    PAYLOAD_TYPES,
    Event,
    FilePart,
    ImagePart,
    Part,
    ReasoningPart,
    RunResult,
    SessionRecord,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    UnknownPayload,
)
from .errors import StorageError

__all__ = [
    "Migration",
    "SCHEMA_VERSION",
    "converter",
    "decode_event",
    "decode_record",
    "decode_run_result",
    "dumps",
    "encode_event",
    "encode_record",
    "encode_run_result",
    "loads",
    "register_migration",
]

T = TypeVar("T")

SCHEMA_VERSION = 2
"""Version written into every persisted payload by this kernel.

2: message parts may be ``reasoning``, ``image`` or ``file``, and ``Usage`` has
``reasoning_tokens`` (see the migrations at the end of this module)."""

Migration = Callable[[dict[str, Any]], dict[str, Any]]

converter = cattrs.Converter(detailed_validation=False)
"""The kernel's converter: attrs records to JSON-ready dicts and back.

Detailed validation is off: persisted data is ours, and decoding must stay cheap (a
hydrate decodes every event of a session). A malformed payload still fails, as a
``StorageError``."""


def _unstructure_media(part: ImagePart | FilePart) -> dict[str, Any]:
    # Inline bytes are stored as base64 text: payloads stay plain JSON.
    data: dict[str, Any] = {"media_type": part.media_type}
    if part.data is not None:
        data["data"] = base64.b64encode(part.data).decode("ascii")
    if part.url is not None:
        data["url"] = part.url
    if part.ref is not None:
        data["ref"] = part.ref
    if isinstance(part, FilePart) and part.name is not None:
        data["name"] = part.name
    return data


def _structure_media(
    value: Mapping[str, Any], cls: type[ImagePart] | type[FilePart]
) -> ImagePart | FilePart:
    raw = value.get("data")
    try:
        data = base64.b64decode(raw, validate=True) if raw is not None else None
    except (binascii.Error, TypeError) as exc:
        raise ValueError(f"{cls.__name__}.data is not base64") from exc
    extra = {"name": value.get("name")} if cls is FilePart else {}
    return cls(value.get("media_type", ""), data, value.get("url"), value.get("ref"), **extra)


for _media in (ImagePart, FilePart):
    converter.register_unstructure_hook(_media, _unstructure_media)
    converter.register_structure_hook(_media, _structure_media)

_PART_TAGS = {
    TextPart: "text",
    ToolCallPart: "tool_call",
    ToolResultPart: "tool_result",
    ReasoningPart: "reasoning",
    ImagePart: "image",
    FilePart: "file",
}
configure_tagged_union(Part, converter, tag_name="kind", tag_generator=lambda cls: _PART_TAGS[cls])
# The tagged-union strategy's structure hook dominated hydration time; dispatch on the
# tag directly with the per-class hooks it would have used.
_PART_BY_TAG = {tag: cls for cls, tag in _PART_TAGS.items()}
_PART_HOOKS = {tag: converter.get_structure_hook(cls) for tag, cls in _PART_BY_TAG.items()}


def _structure_part(value: Mapping[str, Any], _: Any) -> Part:
    # The generated hooks read the fields they know, so "kind" can stay in (no copy).
    tag = value["kind"]
    return _PART_HOOKS[tag](value, _PART_BY_TAG[tag])  # type: ignore[no-any-return]


converter.register_structure_hook(Part, _structure_part)
converter.register_structure_hook_func(
    lambda cls: cls == tuple[Part, ...],
    lambda values, _: tuple(_structure_part(v, None) for v in values),
)

_migrations: dict[tuple[str, int], Migration] = {}


def register_migration(kind: str, from_version: int) -> Callable[[Migration], Migration]:
    """Register ``fn(payload) -> payload`` upgrading ``kind`` from ``from_version`` by one.

    ``kind`` is ``"event"``, ``"session_record"`` or ``"run_result"``. Migrations chain:
    a payload at version 1 read by a kernel at version 3 goes through 1→2 then 2→3.
    """

    def decorator(fn: Migration) -> Migration:
        key = (kind, from_version)
        if key in _migrations:
            raise ValueError(f"a migration for {kind} v{from_version} is already registered")
        _migrations[key] = fn
        return fn

    return decorator


def _upgrade(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(payload)
    version = data.pop("schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise StorageError(f"{kind} payload has an invalid schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{kind} payload has schema_version {version}, newer than this kernel "
            f"({SCHEMA_VERSION}); upgrade harness-kernel to read it"
        )
    while version < SCHEMA_VERSION:
        migration = _migrations.get((kind, version))
        if migration is None:
            raise StorageError(f"no migration registered for {kind} v{version}")
        data = migration(data)
        version += 1
    return data


def _versioned(payload: dict[str, Any]) -> dict[str, Any]:
    payload["schema_version"] = SCHEMA_VERSION
    return payload


def encode_event(event: Event) -> dict[str, Any]:
    """An event as a JSON-ready dict: ``seq``, ``type``, ``at``, ``run_id``, ``data``."""
    payload = event.payload
    data = (
        dict(payload.data)
        if isinstance(payload, UnknownPayload)
        else converter.unstructure(payload)
    )
    return _versioned(
        {
            "seq": event.seq,
            "type": payload.type,
            "at": event.at,
            "run_id": event.run_id,
            "data": data,
        }
    )


_EVENT_HOOKS: dict[str, tuple[Callable[[Any, Any], Any], type]] = {}
"""Each payload type's structure hook, looked up once (``converter.structure`` would
dispatch on the class again for every event of a hydrate)."""


def _payload_hook(kind: str) -> tuple[Callable[[Any, Any], Any], type] | None:
    cls = PAYLOAD_TYPES.get(kind)
    if cls is None:
        return None
    entry = _EVENT_HOOKS[kind] = (converter.get_structure_hook(cls), cls)
    return entry


def decode_event(payload: Mapping[str, Any]) -> Event:
    """The inverse of ``encode_event``; unknown event types decode as ``UnknownPayload``."""
    # The current version needs no migration, so no copy: the common case of a hydrate.
    version = payload.get("schema_version")
    current = type(version) is int and version == SCHEMA_VERSION
    data = payload if current else _upgrade("event", payload)
    try:
        kind = data["type"]
        entry = _EVENT_HOOKS.get(kind) or _payload_hook(kind)
        body = entry[0](data["data"], entry[1]) if entry else UnknownPayload(kind, data["data"])
        return Event(int(data["seq"]), body, float(data["at"]), data.get("run_id"))
    except (KeyError, TypeError, ValueError, AttributeError, cattrs.BaseValidationError) as exc:
        raise StorageError(f"an event could not be decoded: {exc.__class__.__name__}") from exc


def encode_record(record: SessionRecord) -> dict[str, Any]:
    """A session record as a JSON-ready dict."""
    return _versioned(converter.unstructure(record))


def decode_record(payload: Mapping[str, Any]) -> SessionRecord:
    """The inverse of ``encode_record``."""
    try:
        return converter.structure(_upgrade("session_record", payload), SessionRecord)
    except (cattrs.BaseValidationError, KeyError, TypeError, ValueError) as exc:
        raise StorageError("a session record could not be decoded") from exc


def encode_run_result(result: RunResult) -> dict[str, Any]:
    return _versioned(converter.unstructure(result))


def decode_run_result(payload: Mapping[str, Any]) -> RunResult:
    return converter.structure(_upgrade("run_result", payload), RunResult)


# Version 2 only added optional fields and part kinds: a version-1 payload is already a
# valid version-2 payload, so each migration is the identity. They are registered so the
# upgrade path is explicit (and the chain stays unbroken for version 3).
for _kind in ("event", "session_record", "run_result"):
    register_migration(_kind, 1)(lambda payload: payload)


def dumps(payload: Any) -> str:
    """Compact JSON, the form storage backends write."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(text: str | bytes) -> Any:
    return json.loads(text)
