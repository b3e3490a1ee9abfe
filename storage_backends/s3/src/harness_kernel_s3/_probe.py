"""The check, when the storage opens, that the server really enforces conditional writes.

Every guarantee of this storage rests on two preconditions the server must enforce:
``If-None-Match: *`` (create only if absent: appends and ``create``) and ``If-Match``
(replace only the version read: ``save``). Many S3-compatible servers accept both
headers and ignore them; on such a server two writers both succeed and one's events are
silently overwritten. So before its first request the storage writes a probe object of
its own under its prefix, checks that the server refuses what it must refuse, and
deletes the object. See docs/storage/s3.md for the servers tried.
"""

from __future__ import annotations

import secrets
from typing import Any

import trio
from botocore.exceptions import BotoCoreError, ClientError

from harness_kernel.errors import ConfigError, StorageError

from ._client import S3Client, error_code, error_status, is_precondition_failed

__all__ = ["etag_of", "probe_conditional_writes", "probe_key"]

_CLEANUP_SECONDS = 10.0  # a bound on the shielded delete of the probe object


def probe_key(prefix: str) -> str:
    """A key of the probe's own: under ``prefix``, beside (never inside) sessions and index."""
    return f"{prefix}probe/conditional-writes-{secrets.token_hex(8)}"


def etag_of(response: dict[str, Any], what: str) -> str:
    """The ``ETag`` of an S3 response; ``StorageError`` when the server sent none."""
    etag = response.get("ETag")
    if not etag:
        raise StorageError(f"the S3 server returned no ETag for {what}: it cannot fence writers")
    return str(etag)


def _failed(step: str, exc: BaseException) -> StorageError:
    return StorageError(f"the S3 conditional-write check failed at {step} ({error_code(exc) or 'error'})")


async def _put(client: S3Client, step: str, key: str, body: bytes, **condition: str) -> str:
    try:
        response = await client.call("put_object", None, Key=key, Body=body, **condition)
    except (ClientError, BotoCoreError) as exc:
        raise _failed(step, exc) from exc
    return etag_of(response, "a put")


async def _refused(client: S3Client, key: str, body: bytes, refusals: tuple[int, ...], **condition: str) -> bool:
    """Whether the server refused a conditional put with one of ``refusals``."""
    try:
        await client.call("put_object", None, Key=key, Body=body, **condition)
    except (ClientError, BotoCoreError) as exc:
        if is_precondition_failed(exc) or error_status(exc) in refusals:
            return True
        raise _failed(f"a put with {', '.join(condition)}", exc) from exc
    return False


async def probe_conditional_writes(client: S3Client, key: str) -> None:
    """Check that the server enforces ``If-None-Match: *`` and a stale ``If-Match``.

    Raises ``ConfigError`` naming every condition the server ignored, ``StorageError``
    when the server answers the probe with an error or without an ETag. The probe object
    at ``key`` is deleted whatever happens.
    """
    ignored: list[str] = []
    try:
        first = await _put(client, "a create-only put", key, b"1", IfNoneMatch="*")
        # A second create-only put of the same key must fail: 412, or 409 while the
        # first is still settling (S3's ConditionalRequestConflict).
        if not await _refused(client, key, b"2", (409,), IfNoneMatch="*"):
            ignored.append("If-None-Match: * (a create-only put of an existing key succeeded)")
        current = await _put(client, "a replacing put", key, b"3")
        if current == first:
            raise StorageError("the S3 server gave two different objects one ETag: it cannot fence writers")
        if not await _refused(client, key, b"4", (), IfMatch=first):
            ignored.append("If-Match (a replace naming a stale ETag succeeded)")
    finally:
        with trio.move_on_after(_CLEANUP_SECONDS) as cleanup:
            cleanup.shield = True
            try:
                await client.call("delete_object", Key=key)
            except (ClientError, BotoCoreError):
                pass  # best effort: a leftover probe object is harmless, it is never read
    if ignored:
        raise ConfigError(
            f"the S3 server at bucket '{client.bucket}' ignores conditional writes, so this storage "
            f"could lose acknowledged messages: it ignored {' and '.join(ignored)}. Use a server "
            "that enforces them (see docs/storage/s3.md); unsafe_skip_conditional_write_check "
            "turns this check off"
        )
